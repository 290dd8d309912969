"""One golden customer across every system.

Rules, strongest first: the same normalized email; the same phone (E.164) with a similar last name; a very
similar full name at a similar address in the same postal code. Candidate pairs come from SQL (blocked by key,
never a full cross join); clusters from union-find. Golden ids are stable: a cluster keeps the id its members
had on the last run (the majority's, when clusters merged), and a new cluster's id derives from its smallest
member key, so an unchanged customer never changes id.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

import duckdb

from .models import TableChange, write_by_key

RULES = ("email", "phone+last_name", "name+address")
FREE_MAIL = ("gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "icloud.com",
             "aol.com", "proton.me", "protonmail.com", "gmx.de", "web.de", "mail.com")
CALLING_CODES = {"US": "1", "CA": "1", "GB": "44", "DE": "49", "FR": "33", "IE": "353", "AU": "61", "NL": "31"}
NAME_SIMILARITY = 0.93
ADDRESS_SIMILARITY = 0.85
LAST_NAME_SIMILARITY = 0.9


@dataclass(frozen=True)
class Member:
    source_system: str
    source_id: str


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    codes = " ".join(f"WHEN '{c}' THEN '{d}'" for c, d in CALLING_CODES.items())
    free = ", ".join(f"'{d}'" for d in FREE_MAIL)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _people AS
        WITH base AS (
            SELECT source_system, source_id, updated_at, created_at, country,
                   nullif(lower(trim(email)), '') AS email_norm,
                   regexp_replace(coalesce(phone, ''), '[^0-9+]', '', 'g') AS phone_digits,
                   nullif(trim(regexp_replace(lower(strip_accents(coalesce(nullif(full_name, ''),
                       concat_ws(' ', first_name, last_name), ''))), '[^a-z ]', '', 'g')), '') AS name_norm,
                   nullif(lower(strip_accents(coalesce(last_name,
                       split_part(trim(full_name), ' ', -1), ''))), '') AS last_norm,
                   nullif(upper(regexp_replace(coalesce(postal_code, ''), '\\s', '', 'g')), '') AS postal_norm,
                   nullif(lower(regexp_replace(coalesce(address_line1, ''), '[^a-zA-Z0-9 ]', '', 'g')), '')
                       AS address_norm
            FROM staging.customer_records
        )
        SELECT *,
               CASE WHEN phone_digits LIKE '+%' AND length(phone_digits) >= 8 THEN phone_digits
                    WHEN length(phone_digits) >= 7 THEN
                        CASE country {codes} ELSE NULL END
                        || CASE WHEN phone_digits LIKE '0%' THEN substr(phone_digits, 2) ELSE phone_digits END
               END AS phone_e164,
               CASE WHEN split_part(email_norm, '@', 2) NOT IN ({free})
                    THEN nullif(split_part(email_norm, '@', 2), '') END AS company_domain
        FROM base""")
    # a '+1' prefix on a local number must not be applied twice
    con.execute("UPDATE _people SET phone_e164 = '+' || phone_e164 WHERE phone_e164 NOT LIKE '+%'")


def _edges(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str, str]]:
    return con.execute(f"""
        SELECT a.source_system, a.source_id, b.source_system, b.source_id, 'email'
        FROM _people a JOIN _people b ON a.email_norm = b.email_norm
        WHERE (a.source_system, a.source_id) < (b.source_system, b.source_id)
        UNION ALL
        SELECT a.source_system, a.source_id, b.source_system, b.source_id, 'phone+last_name'
        FROM _people a JOIN _people b ON a.phone_e164 = b.phone_e164
        WHERE (a.source_system, a.source_id) < (b.source_system, b.source_id)
          AND jaro_winkler_similarity(a.last_norm, b.last_norm) >= {LAST_NAME_SIMILARITY}
        UNION ALL
        SELECT a.source_system, a.source_id, b.source_system, b.source_id, 'name+address'
        FROM _people a JOIN _people b ON a.postal_norm = b.postal_norm
        WHERE (a.source_system, a.source_id) < (b.source_system, b.source_id)
          AND jaro_winkler_similarity(a.name_norm, b.name_norm) >= {NAME_SIMILARITY}
          AND jaro_winkler_similarity(coalesce(a.address_norm, ''), coalesce(b.address_norm, ''))
              >= {ADDRESS_SIMILARITY}
        ORDER BY 1, 2, 3, 4""").fetchall()


def _clusters(members: list[Member], edges: list[tuple[str, str, str, str, str]]) -> tuple[
        dict[Member, Member], dict[Member, str]]:
    parent = {m: m for m in members}

    def find(m: Member) -> Member:
        while parent[m] != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    best_rule: dict[Member, str] = {}
    for rule in RULES:  # strongest rule first, so a record's rule is the strongest that links it
        for sa, ia, sb, ib, edge_rule in edges:
            if edge_rule != rule:
                continue
            a, b = Member(sa, ia), Member(sb, ib)
            best_rule.setdefault(a, rule)
            best_rule.setdefault(b, rule)
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb, key=_sort_key)] = min(ra, rb, key=_sort_key)
    return {m: find(m) for m in members}, best_rule


def _sort_key(m: Member) -> tuple[str, str]:
    return (m.source_system, m.source_id)


def _new_golden_id(anchor: Member) -> str:
    return "cust_" + hashlib.sha1(f"{anchor.source_system}:{anchor.source_id}".encode()).hexdigest()[:16]


def resolve(con: duckdb.DuckDBPyConnection) -> dict[str, TableChange]:
    """Rebuild core.customer_xref, core.customers and core.customer_duplicates from staging.customer_records."""
    _normalize(con)
    members = [Member(s, i) for s, i in con.execute(
        "SELECT source_system, source_id FROM _people ORDER BY 1, 2").fetchall()]
    roots, best_rule = _clusters(members, _edges(con))
    previous: dict[Member, str] = {}
    has_xref = con.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_schema='core' AND table_name='customer_xref'").fetchone()[0]
    if has_xref:
        previous = {Member(s, i): g for s, i, g in con.execute(
            "SELECT source_system, source_id, golden_id FROM core.customer_xref").fetchall()}

    clusters: dict[Member, list[Member]] = defaultdict(list)
    for member in members:
        clusters[roots[member]].append(member)
    # Larger clusters claim their previous id first; a split-off part gets a fresh id.
    ordered = sorted(clusters.items(), key=lambda kv: (-len(kv[1]), _sort_key(kv[0])))
    claimed: set[str] = set()
    golden_of: dict[Member, str] = {}
    for _root, cluster in ordered:
        votes = Counter(previous[m] for m in cluster if m in previous and previous[m] not in claimed)
        if votes:
            golden = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        else:
            golden = _new_golden_id(min(cluster, key=_sort_key))
            suffix = 1
            while golden in claimed:
                golden = f"{_new_golden_id(min(cluster, key=_sort_key))}_{suffix}"
                suffix += 1
        claimed.add(golden)
        for member in cluster:
            golden_of[member] = golden

    rows = [(m.source_system, m.source_id, golden_of[m],
             best_rule.get(m, "unique") if len(clusters[roots[m]]) > 1 else "unique") for m in members]
    con.execute("CREATE OR REPLACE TEMP TABLE _xref (source_system VARCHAR, source_id VARCHAR, "
                "golden_id VARCHAR, match_rule VARCHAR)")
    if rows:
        con.executemany("INSERT INTO _xref VALUES (?, ?, ?, ?)", rows)
    changes = {"customer_xref": write_by_key(
        con, "core.customer_xref", "SELECT * FROM _xref ORDER BY source_system, source_id",
        ("source_system", "source_id"))}
    changes["customers"] = write_by_key(con, "core.customers", _GOLDEN_SQL, ("golden_id",))
    changes["customer_duplicates"] = write_by_key(
        con, "core.customer_duplicates", _DUPLICATES_SQL, ("source_system", "source_id_a", "source_id_b"))
    return changes


# Survivorship: each attribute from the most trusted system that has it (ref.systems.trust_rank: accounting
# before ERP before CRM before payments and storefronts), newest record first within a system.
_GOLDEN_SQL = """
WITH ranked AS (
    SELECT x.golden_id, p.*, coalesce(s.trust_rank, 99) AS trust_rank,
           c.full_name, c.company_name
    FROM _xref x
    JOIN _people p USING (source_system, source_id)
    JOIN staging.customer_records c USING (source_system, source_id)
    LEFT JOIN ref.systems s ON s.name = x.source_system
)
SELECT golden_id,
       arg_min(email_norm, (trust_rank, -epoch(updated_at))) FILTER (WHERE email_norm IS NOT NULL) AS email,
       arg_min(phone_e164, (trust_rank, -epoch(updated_at))) FILTER (WHERE phone_e164 IS NOT NULL) AS phone_e164,
       arg_min(full_name, (trust_rank, -epoch(updated_at))) FILTER (WHERE full_name IS NOT NULL) AS full_name,
       arg_min(company_name, (trust_rank, -epoch(updated_at))) FILTER (WHERE company_name IS NOT NULL)
           AS company_name,
       arg_min(company_domain, (trust_rank, -epoch(updated_at))) FILTER (WHERE company_domain IS NOT NULL)
           AS company_domain,
       arg_min(country, (trust_rank, -epoch(updated_at))) FILTER (WHERE country IS NOT NULL) AS country,
       list_sort(list_distinct(list(source_system))) AS systems,
       count(*) AS record_count,
       min(created_at) AS first_seen_at,
       max(updated_at) AS updated_at
FROM ranked
GROUP BY golden_id
ORDER BY golden_id
"""

_DUPLICATES_SQL = """
SELECT a.source_system, a.golden_id, a.source_id AS source_id_a, b.source_id AS source_id_b,
       pa.email_norm AS email_a, pb.email_norm AS email_b,
       -- the weaker of the two records' rules is what ties the second record to the first
       CASE WHEN list_position(['email', 'phone+last_name', 'name+address', 'unique'], a.match_rule)
                 >= list_position(['email', 'phone+last_name', 'name+address', 'unique'], b.match_rule)
            THEN a.match_rule ELSE b.match_rule END AS match_rule,
       'the same customer is recorded twice in ' || a.source_system || '; merge them there' AS action
FROM _xref a
JOIN _xref b ON a.golden_id = b.golden_id AND a.source_system = b.source_system AND a.source_id < b.source_id
JOIN _people pa ON pa.source_system = a.source_system AND pa.source_id = a.source_id
JOIN _people pb ON pb.source_system = b.source_system AND pb.source_id = b.source_id
ORDER BY 1, 3, 4
"""
