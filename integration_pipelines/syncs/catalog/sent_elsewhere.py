"""Money reaches one company's books once: before a books sync sends a record, it asks whether another books' sync
of the same kind has sent it already. One rule for every such pair (won deals, milestones, expenses, processor fees
and refunds), so that they cannot drift apart.

"Sent" means the other sync's ledger holds it as created, linked to an existing document, or in doubt (sent, answer
lost), or its journal still holds it as pending (a write whose answer is not known yet, e.g. after a crash, until
that sync's next run settles it). Such a record stays where it went even when its entity changes afterwards (a
corrected country, a new books of record): moving it would book it twice, which the reconciliation reports instead.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Ledger statuses of a record that is (or may be) in the other books. Failed, waiting or skipped ones never got there.
SENT_STATUSES = ("synced", "linked", "in_doubt")


def sent_entries(sync_names: Iterable[str]) -> str:
    """SQL subquery `(sync_name, record_key)`: every record one of `sync_names` has sent or may have sent."""
    names = ", ".join(f"'{name}'" for name in sync_names) or "''"
    statuses = ", ".join(f"'{status}'" for status in SENT_STATUSES)
    return f"""(SELECT sync_name, record_key FROM sync.ledger
            WHERE sync_name IN ({names}) AND status IN ({statuses})
            UNION ALL
            SELECT sync_name, record_key FROM sync.pending WHERE sync_name IN ({names}))"""


def sent_by(sync_names: Iterable[str], key_matches: str) -> str:
    """SQL for `EXISTS (...)`: one of `sync_names` has sent a record whose key satisfies `key_matches`, a predicate on
    `sent.record_key` (e.g. `sent.record_key = m._pk`)."""
    return f"SELECT 1 FROM {sent_entries(sync_names)} AS sent WHERE {key_matches}"
