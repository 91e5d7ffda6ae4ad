"""Simulated Dynamics 365 Finance & Operations OData service (`/data/...`).

It answers like F&O on every point of `docs/d365-api.md` that the tool depends on: case-sensitive
entity sets, composite keys in the URL, the `{"error": {..., "innererror": {...}}}` shape with the
Infolog text in `innererror.message`, number-sequence journal batch numbers, ledger dimension display
values split by the active integration format and delimiter, server-driven paging with an absolute
`@odata.nextLink`, `cross-company`, and `$batch` with atomic changesets that answer 200 even when a
changeset failed.

Two pieces matter to its users:
- `D365State`: the company's data, guarded by one lock, with methods tests use to reconfigure it.
- `D365Service`: turns a `SimRequest` into a `SimResponse`. The HTTPS server mounts it; tests call
  `handle()` directly.

Its rooms, each importing only the ones before it: `schema` (entity sets, enums, type defaults),
`errors` (F&O's error shape), `values` (literals, keys, body coercion), `query` (`$filter` and key
predicates), `store` (`D365State` and a changeset's staged writes), `entities` (create/update/delete
rules), `batch` (multipart/mixed), `dmf` (the Data management package API, its blob storage and the cost
model) and `service` (`D365Service`).

Documented simplifications (where the real service is unknown or the tool does not need more):
- `$expand` supports only `LedgerJournalHeaders?$expand=LedgerJournalLine`.
- Content-ID references (`$1`) are resolved only as the whole URL or its first segment of a later
  operation in the same changeset (`PATCH $1`, `DELETE $1`); `$1` inside JSON bodies and navigation
  after `$1` are not supported (deep insert of a header with its lines is not supported either).
- Number sequences are not transactional: a rolled-back changeset leaves a gap, as a non-continuous
  D365 number sequence does.
- `If-Match` is ignored; `@odata.etag` is returned on every entity.
- DimensionAttributes, DimensionIntegrationFormats and DimensionParameters are read-only over OData;
  tests change them with `D365State.set_ledger_format` / `set_delimiter` / `add_custom_dimension`.
- Only Ledger accounts exist: a line whose AccountType is Cust/Vend/Bank/... fails validation because
  the sandbox holds no customers, vendors or bank accounts.
- The GL journal entries behind `GeneralJournalAccountEntries` (an entity set the reference could not
  confirm) appear only when a test posts a journal with `D365State.post_journal`: there is no OData
  posting action, as in F&O.
"""

from ukg2d365.sandbox.d365.service import D365Service
from ukg2d365.sandbox.d365.store import D365State

__all__ = ["D365Service", "D365State"]
