"""Small builders shared by unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ukg2d365.config import Config, parse_config

CONFIG_YAML = """
ukg:
  base_url: https://service4.ultipro.com
  pay_groups: [BW]
d365:
  base_url: https://contoso.operations.dynamics.com
  tenant_id: t
  client_id: c
  legal_entity: usmf
  batch_size: 3
payroll:
  summarize: {summarize}
mapping:
  ledger_format: [MainAccount, CostCenter, Department]
  delimiter: "-"
  main_accounts: {{"5000": "601500", "2100": "211000"}}
  dimensions:
    CostCenter: {{source: orgLevel1, values: {{"110": "CC110"}}}}
    Department: {{source: orgLevel2, create_in: OperatingUnits}}
"""


def make_config(tmp: Path | None = None, *, summarize: bool = True) -> Config:
    path = (tmp or Path("/nonexistent")) / "ukg2d365.yaml"
    return parse_config(CONFIG_YAML.format(summarize=str(summarize).lower()), path)


def gl(account: str, debit: Any = 0, credit: Any = 0, *, run: str = "R1", cc: str = "", dept: str = "",
       period: str = "2026-11-13T00:00:00", pay_group: str = "BW", system_id: int = 1, **extra: Any) -> dict:
    item = {"runId": run, "coId": "C0MP1", "companyCode": "MFG", "payGroup": pay_group, "periodEndDate": period,
            "generalLedgerAccount": account, "debitAmt": debit, "creditAmt": credit, "orgLevel1": cc,
            "orgLevel2": dept, "orgLevel3": "", "orgLevel4": "", "blockId": 1, "totalNrOfBlocks": 1,
            "systemId": system_id}
    item.update(extra)
    return item
