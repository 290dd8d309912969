"""The accounts a sync posts to, from the books' chart as the business configured it (`ref.books_accounts`:
seeds/books_accounts.csv, or the business's own file in IP_BOOKS_ACCOUNTS_FILE), never from code: ids are per
company (a QuickBooks account id is per realm, a Xero code per organisation)."""

from __future__ import annotations

from ...warehouse.models import BOOKS_ACCOUNTS_FILE_ENV


def books_account(books: str, purpose_sql: str) -> str:
    """SQL: the account code of `books` for a purpose (an SQL expression, e.g. `'expense_category:' || e.category`),
    NULL when the business has none for it (the record then waits: see the syncs' `required_columns`)."""
    return (f"(SELECT min(a.account_code) FROM ref.books_accounts AS a "
            f"WHERE a.books_system = '{books}' AND a.purpose = {purpose_sql})")


def with_accounts(source_sql: str, books: str, **purposes: str) -> str:
    """SQL: the source's rows with one column per fixed account (`column=purpose`). A purpose the books accounts lack
    stops the plan, before anything is sent, with one sentence naming the purpose and where to add it: an entry
    without its clearing or fee account cannot be booked at all, unlike one whose category has no account yet."""
    columns = ", ".join(
        f"CASE WHEN {books_account(books, repr(purpose))} IS NULL THEN error('ref.books_accounts has no account "
        f"for books_system={books}, purpose={purpose}: add the row to seeds/books_accounts.csv or to your own "
        f"file in {BOOKS_ACCOUNTS_FILE_ENV}') ELSE {books_account(books, repr(purpose))} END AS {column}"
        for column, purpose in purposes.items())
    return f"SELECT src.*, {columns} FROM ({source_sql}) AS src"
