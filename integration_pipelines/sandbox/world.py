"""A deterministic, messy small business: the same customers across CRM, accounting and payments.

Everything derives from `random.Random(seed)` and an anchor time, so a test can name facts of the world
(how many customers, which email differs in case) and they hold on every machine. The messiness a real
business has is planted on purpose and recorded in `World.anomalies` so later tests can assert it is found.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

FIRST = ["Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances", "Dennis", "Radia",
         "Edsger", "Katherine", "John", "Hedy", "Donald", "Shafi", "Tim", "Sophie", "Niklaus", "Carol"]
LAST = ["Lovelace", "Hopper", "Torvalds", "Hamilton", "Turing", "Liskov", "Thompson", "Allen", "Ritchie",
        "Perlman", "Dijkstra", "Johnson", "Smith", "Lamarr", "Knuth", "Goldwasser", "Berners-Lee", "Wilson",
        "Wirth", "Shaw"]
COMPANY_WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Tyrell", "Cyberdyne",
                 "Soylent", "Hooli", "Vandelay", "Pied Piper", "Aperture", "Black Mesa", "Gringotts"]
COMPANY_SUFFIX = ["Ltd", "LLC", "Inc", "GmbH", "& Co"]
CITIES = [("Springfield", "US", "USD"), ("Portland", "US", "USD"), ("Austin", "US", "USD"),
          ("London", "GB", "GBP"), ("Manchester", "GB", "GBP"), ("Berlin", "DE", "EUR")]
PRODUCTS = [("WIDGET-S", "Small widget", 1500), ("WIDGET-L", "Large widget", 4500),
            ("GADGET", "Gadget", 9900), ("SERVICE-HR", "Consulting hour", 12000),
            ("SUPPORT-Y", "Annual support plan", 60000), ("CABLE", "Cable kit", 750)]
SUBSIDIARY_BY_COUNTRY = {"US": "Acme Trading Inc (US)", "GB": "Acme Trading Ltd (UK)", "DE": "Acme Trading GmbH (DE)"}
#: The email domain each group company's staff write from (the expense tool's employees).
STAFF_DOMAIN_BY_COUNTRY = {"US": "acme-trading.com", "GB": "acme-trading.co.uk", "DE": "acme-trading.de"}
#: What the group sells by subscription: (code, name, price in minor units of the subscriber's currency, interval).
SUBSCRIPTION_PLANS = [("basic-monthly", "Basic monthly", 2900, "month"), ("pro-monthly", "Pro monthly", 9900, "month"),
                      ("pro-yearly", "Pro yearly", 99000, "year"), ("team-monthly", "Team monthly", 24900, "month")]


@dataclass
class Company:
    key: int
    name: str
    domain: str


@dataclass
class Person:
    key: int
    first_name: str
    last_name: str
    email: str
    phone: str
    company: Company
    street: str
    city: str
    postal_code: str
    country: str
    currency: str
    created_at: datetime
    updated_at: datetime
    subsidiary: str
    in_crm: bool = True
    in_stripe: bool = True

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


@dataclass
class Product:
    key: int
    sku: str
    name: str
    unit_price: int
    currency: str
    stock: int


@dataclass
class InvoiceLine:
    product: Product
    quantity: int

    @property
    def amount(self) -> int:
        return self.product.unit_price * self.quantity


@dataclass
class Invoice:
    key: int
    number: str
    person: Person
    issued_at: datetime
    due_at: datetime
    lines: list[InvoiceLine]
    currency: str
    billed_via_stripe: bool
    paid: bool = False

    @property
    def amount(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass
class Payment:
    key: int
    person: Person
    invoice: Invoice | None
    amount: int
    currency: str
    created_at: datetime
    processor: str
    fee: int
    refunded: int = 0


@dataclass
class Deal:
    key: int
    person: Person
    name: str
    amount: int
    currency: str
    stage: str
    created_at: datetime
    close_date: datetime
    updated_at: datetime


@dataclass
class SubscriptionPlan:
    key: int
    code: str
    name: str
    unit_amount: int
    interval: str  # day | week | month | year


@dataclass
class Subscription:
    """A customer's subscription at a payment processor as it stands at the world's anchor. `status` is the
    processor's own word: Stripe's `trialing`, `active`, `past_due`, `canceled`; Square's `PENDING`, `ACTIVE`,
    `DEACTIVATED`, `CANCELED`, `PAUSED`. `changed_at` is when it came to that status (None: it was created so);
    the period is the current billing period (for a trial: the trial; for Square's PENDING: the first one)."""

    key: int
    person: Person
    processor: str
    plan: SubscriptionPlan
    currency: str
    status: str
    created_at: datetime
    period_start: datetime
    period_end: datetime
    trial_end: datetime | None = None
    changed_at: datetime | None = None
    canceled_at: datetime | None = None
    cancel_at_period_end: bool = False


@dataclass
class World:
    seed: int
    scale: float
    anchor: datetime
    days: int
    companies: list[Company] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    invoices: list[Invoice] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)
    subscription_plans: list[SubscriptionPlan] = field(default_factory=list)
    #: A handful of subscriptions per processor on existing customers, in every status (`_subscribe`).
    subscriptions: list[Subscription] = field(default_factory=list)
    anomalies: dict[str, object] = field(default_factory=dict)
    #: Anomalies planted through the vendors' APIs after start (the messy world, `sandbox/messy.py`): one record
    #: per planted situation, as `POST /_sandbox/world/anomalies` received it (see docs/messy-world.md).
    planted: list[dict[str, Any]] = field(default_factory=list)

    def rng(self, salt: str) -> random.Random:
        """A private random stream per emulator, so one system's choices never shift another's."""
        return random.Random(f"{self.seed}:{salt}")

    @property
    def start(self) -> datetime:
        return self.anchor - timedelta(days=self.days)


def add_interval(moment: datetime, interval: str, count: int = 1) -> datetime:
    """`moment` plus `count` billing intervals, as processors bill: calendar months and years (the 31st of January
    plus a month is the last day of February), weeks and days as such."""
    if interval in ("day", "week"):
        return moment + timedelta(days=count * (7 if interval == "week" else 1))
    if interval not in ("month", "year"):
        raise ValueError(f"unknown billing interval {interval!r}; use day, week, month or year")
    months = moment.month - 1 + count * (12 if interval == "year" else 1)
    year, month = moment.year + months // 12, months % 12 + 1
    following = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=moment.tzinfo)
    last_day = (following - timedelta(days=1)).day
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    seconds = int((end - start).total_seconds())
    return start + timedelta(seconds=rng.randrange(max(1, seconds)))


def build_world(seed: int = 7, scale: float = 1.0, anchor: datetime | None = None, days: int = 30) -> World:
    """Build the business. `anchor` is the end of history (default: midnight today, UTC)."""
    if anchor is None:
        now = datetime.now(UTC)
        anchor = datetime(now.year, now.month, now.day, tzinfo=UTC)
    anchor = anchor.astimezone(UTC)
    rng = random.Random(seed)
    world = World(seed=seed, scale=scale, anchor=anchor, days=days)
    start = world.start

    n_companies = max(4, int(12 * scale))
    used: set[str] = set()
    for key in range(n_companies):
        while True:
            name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIX)}"
            if name not in used:
                used.add(name)
                break
        slug = name.split()[0].lower().replace("&", "and")
        world.companies.append(Company(key, name, f"{slug}{key}.example.com"))

    for key, (sku, pname, price) in enumerate(PRODUCTS):
        world.products.append(Product(key, sku, pname, price, "USD", rng.randint(0, 250)))

    n_people = max(8, int(40 * scale))
    for key in range(n_people):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        company = world.companies[key % n_companies]
        city, country, currency = rng.choice(CITIES)
        created = _moment(rng, start, anchor)
        world.people.append(
            Person(
                key=key, first_name=first, last_name=last,
                email=f"{first.lower()}.{last.lower().replace('-', '')}{key}@{company.domain}",
                phone=f"+1555{rng.randrange(10**6, 10**7)}", company=company,
                street=f"{rng.randint(1, 999)} {rng.choice(['High', 'Main', 'Market', 'Station'])} Street",
                city=city, postal_code=f"{rng.randint(10000, 99999)}", country=country, currency=currency,
                created_at=created, updated_at=_moment(rng, created, anchor),
                subsidiary=SUBSIDIARY_BY_COUNTRY[country],
                in_crm=rng.random() < 0.85, in_stripe=rng.random() < 0.7,
            )
        )

    n_invoices = max(10, int(60 * scale))
    for key in range(n_invoices):
        person = rng.choice(world.people)
        issued = _moment(rng, max(start, person.created_at), anchor)
        lines = [InvoiceLine(rng.choice(world.products), rng.randint(1, 5)) for _ in range(rng.randint(1, 3))]
        world.invoices.append(
            Invoice(key, f"INV-{1001 + key}", person, issued, issued + timedelta(days=30), lines,
                    person.currency, billed_via_stripe=person.in_stripe and rng.random() < 0.4)
        )

    for invoice in world.invoices:
        if rng.random() < 0.6:
            invoice.paid = True
            paid_at = min(anchor - timedelta(seconds=1), _moment(rng, invoice.issued_at, invoice.due_at))
            processor = "stripe" if invoice.person.in_stripe else "square"
            world.payments.append(
                Payment(len(world.payments), invoice.person, invoice, invoice.amount, invoice.currency, paid_at,
                        processor, fee=round(invoice.amount * 0.029) + 30)
            )

    stages = ["appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "closedwon", "closedlost"]
    for key in range(max(6, int(25 * scale))):
        person = rng.choice([p for p in world.people if p.in_crm])
        created = _moment(rng, start, anchor)
        world.deals.append(
            Deal(key, person, f"{person.company.name} - {rng.choice(['renewal', 'expansion', 'new'])}",
                 rng.randrange(50, 500) * 1000, person.currency, rng.choice(stages), created,
                 created + timedelta(days=rng.randint(5, 60)), _moment(rng, created, anchor))
        )

    _plant_anomalies(world, rng)
    _subscribe(world)
    return world


def _plant_anomalies(world: World, rng: random.Random) -> None:
    """The messiness of real life, each recorded so tests can assert it is detected downstream."""
    crm_people = [p for p in world.people if p.in_crm]
    world.anomalies["crm_email_case_differs"] = crm_people[0].key  # CRM holds e.g. Ada.Lovelace0@Acme...
    world.anomalies["crm_duplicate_contact"] = crm_people[1].key  # created twice in the CRM
    stripe_person = next(p for p in world.people if p.in_stripe)
    orphan = Payment(len(world.payments), stripe_person, None, 2500, stripe_person.currency,
                     _moment(rng, world.start, world.anchor - timedelta(seconds=1)), "stripe", fee=103)
    world.payments.append(orphan)
    world.anomalies["payment_without_invoice"] = orphan.key
    stripe_paid = [p for p in world.payments if p.processor == "stripe" and p.invoice is not None]
    if stripe_paid:
        mismatched = stripe_paid[0]
        mismatched.amount -= 100  # the customer short-paid by one unit of currency
        world.anomalies["payment_amount_mismatch"] = mismatched.key


def _subscribe(world: World) -> None:
    """A handful of subscriptions per processor, on customers the CRM knows, one in each status the processor has.

    Drawn from a random stream of their own (`world.rng("subscriptions")`), after everything else, so the rest of the
    world is the same with or without them. Every moment lies between the customer's creation and the anchor, in
    order (created, then changed), so the list reads of the world's days find each one.

    Stripe (customers in Stripe): `trialing` (a 14-day trial), `active`, `past_due` (migrated into Stripe with its
    billing start backdated; its first renewal in Stripe failed), `canceled` and then `active` again for the same
    customer (an old subscription canceled, a new one taken out later), and `active` with `cancel_at_period_end`.
    Square (customers who pay through Square; the seller bills in USD): `PENDING` (starts in a week), `ACTIVE`,
    `DEACTIVATED` (Square stopped billing it), `CANCELED` and `PAUSED`.
    """
    rng = world.rng("subscriptions")
    world.subscription_plans = [SubscriptionPlan(key, code, name, amount, interval)
                                for key, (code, name, amount, interval) in enumerate(SUBSCRIPTION_PLANS)]
    plan = {p.code: p for p in world.subscription_plans}
    anchor = world.anchor

    def between(start: datetime, low: float, high: float) -> datetime:
        span = (anchor - start).total_seconds()
        return (start + timedelta(seconds=int(span * rng.uniform(low, high)))).replace(microsecond=0)

    def add(person: Person, processor: str, code: str, status: str, created: datetime, **facts: Any) -> Subscription:
        chosen = plan[code]
        currency = person.currency if processor == "stripe" else "USD"
        facts.setdefault("period_start", created)
        facts.setdefault("period_end", add_interval(facts["period_start"], chosen.interval))
        subscription = Subscription(len(world.subscriptions), person, processor, chosen, currency, status, created,
                                    **facts)
        world.subscriptions.append(subscription)
        return subscription

    known = [p for p in world.people if p.in_crm]
    stripe_people = [p for p in known if p.in_stripe]
    square_people = [p for p in known if not p.in_stripe]
    if len(stripe_people) >= 5:  # a very small world (scale well below 1) may have too few to subscribe
        stripe = rng.sample(stripe_people, 5)
        trial = between(stripe[0].created_at, 0.1, 0.9)
        add(stripe[0], "stripe", "pro-monthly", "trialing", trial, trial_end=trial + timedelta(days=14),
            period_end=trial + timedelta(days=14))
        add(stripe[1], "stripe", "basic-monthly", "active", between(stripe[1].created_at, 0.05, 0.6))
        migrated = between(stripe[2].created_at, 0.0, 0.4)
        renewal = between(migrated, 0.3, 0.8)
        add(stripe[2], "stripe", "team-monthly", "past_due", migrated, period_start=renewal, changed_at=renewal)
        old = between(stripe[3].created_at, 0.0, 0.3)
        canceled = between(old, 0.2, 0.5)
        add(stripe[3], "stripe", "basic-monthly", "canceled", old, changed_at=canceled, canceled_at=canceled)
        add(stripe[3], "stripe", "pro-yearly", "active", between(canceled, 0.1, 0.6))
        leaving = between(stripe[4].created_at, 0.05, 0.5)
        add(stripe[4], "stripe", "pro-monthly", "active", leaving, cancel_at_period_end=True,
            changed_at=between(leaving, 0.3, 0.9))
    if len(square_people) >= 5:
        square = rng.sample(square_people, 5)
        pending = between(square[0].created_at, 0.1, 0.9)
        start = datetime(pending.year, pending.month, pending.day, tzinfo=pending.tzinfo) + timedelta(days=7)
        add(square[0], "square", "pro-monthly", "PENDING", pending, period_start=start)
        add(square[1], "square", "basic-monthly", "ACTIVE", between(square[1].created_at, 0.05, 0.6))
        for person, code, status in ((square[2], "team-monthly", "DEACTIVATED"),
                                     (square[3], "pro-monthly", "CANCELED"), (square[4], "basic-monthly", "PAUSED")):
            created = between(person.created_at, 0.0, 0.4)
            changed = between(created, 0.2, 0.8)
            add(person, "square", code, status, created, changed_at=changed,
                canceled_at=changed if status == "CANCELED" else None)
