"""Write the shipped sample company file: `python -m services.enrich.sample_companies data/companies.csv`.

Seeded, so the committed file is reproducible. Employee counts follow a long tail (most companies are
small), revenue is drawn per employee by industry, and every row's ranges agree with its numbers.
"""

from __future__ import annotations

import csv
import random
import re
import sys
import unicodedata
from pathlib import Path

from faker import Faker

COLUMNS = ("domain", "company_name", "employees", "employee_range", "industry", "revenue_range", "country")

# industry -> (weight, revenue per employee in USD, rough)
INDUSTRIES: dict[str, tuple[int, int]] = {
    "Software": (18, 220_000),
    "IT Services": (10, 120_000),
    "Financial Services": (8, 350_000),
    "Manufacturing": (10, 250_000),
    "Retail": (7, 180_000),
    "Healthcare": (6, 150_000),
    "Professional Services": (8, 140_000),
    "Education": (4, 80_000),
    "Media & Entertainment": (4, 200_000),
    "Telecommunications": (3, 400_000),
    "Logistics & Transportation": (5, 190_000),
    "Energy & Utilities": (3, 600_000),
    "Construction": (4, 210_000),
    "Hospitality": (3, 70_000),
    "Marketing & Advertising": (5, 130_000),
    "Non-Profit": (2, 60_000),
}
# locale -> (country, top-level domains)
LOCALES: dict[str, tuple[str, tuple[str, ...]]] = {
    "de_DE": ("DE", ("de", "com", "io")),
    "de_AT": ("AT", ("at", "com")),
    "de_CH": ("CH", ("ch", "com")),
    "fr_FR": ("FR", ("fr", "com", "io")),
    "en_GB": ("GB", ("co.uk", "com", "io")),
    "nl_NL": ("NL", ("nl", "com")),
    "en_US": ("US", ("com", "io", "ai", "co")),
    "es_ES": ("ES", ("es", "com")),
    "it_IT": ("IT", ("it", "com")),
    "pl_PL": ("PL", ("pl", "com")),
}
EMPLOYEE_RANGES = ((1, 10), (11, 50), (51, 200), (201, 500), (501, 1000), (1001, 5000), (5001, 10000))
REVENUE_RANGES = (
    (0, 1_000_000, "0-1M"),
    (1_000_000, 10_000_000, "1M-10M"),
    (10_000_000, 50_000_000, "10M-50M"),
    (50_000_000, 100_000_000, "50M-100M"),
    (100_000_000, 500_000_000, "100M-500M"),
    (500_000_000, 1_000_000_000, "500M-1B"),
    (1_000_000_000, 10**13, "1B+"),
)


def employee_range(employees: int) -> str:
    for low, high in EMPLOYEE_RANGES:
        if low <= employees <= high:
            return f"{low}-{high}"
    return "10001+"


def revenue_range(revenue: int) -> str:
    return next(label for low, high, label in REVENUE_RANGES if low <= revenue < high)


def ascii_fold(text: str) -> str:
    table: dict[str, str | int | None] = {"ł": "l", "ß": "ss", "ø": "o", "æ": "ae", "đ": "d"}
    text = text.lower().translate(str.maketrans(table))
    text = text.replace("ä", "ae").replace("ö", "oe").replace("ü", "ue")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def slug(name: str) -> str:
    words = re.sub(r"[^a-z0-9 ]", " ", ascii_fold(name).replace("&", " ")).split()
    stop = {"gmbh", "ag", "kg", "co", "und", "and", "the", "sa", "sas", "sarl", "ltd", "plc", "llc", "inc"}
    stop |= {
        "spa",
        "srl",
        "bv",
        "nv",
        "sl",
        "sp",
        "zoo",
        "e",
        "v",
        "mbh",
        "ohg",
        "kgaa",
        "group",
        "s",
        "a",
        "i",
        "y",
        "et",
        "syn",
        "fils",
        "figli",
    }
    kept = [w for w in words if w not in stop] or words
    return "-".join(kept[:2])


def companies(count: int, seed: int = 4) -> list[dict[str, str | int]]:
    rng = random.Random(seed)
    fakers = {locale: Faker(locale) for locale in LOCALES}
    for offset, fake in enumerate(fakers.values()):
        fake.seed_instance(seed + offset)
    names = list(INDUSTRIES)
    weights = [INDUSTRIES[n][0] for n in names]
    rows: dict[str, dict[str, str | int]] = {}
    while len(rows) < count:
        locale = rng.choice(list(LOCALES))
        country, tlds = LOCALES[locale]
        name = fakers[locale].company()
        domain = f"{slug(name)}.{rng.choice(tlds)}"
        if domain in rows or len(domain) < 5:
            continue
        employees = max(1, min(10_000, int(rng.paretovariate(0.6) * 6)))
        industry = rng.choices(names, weights)[0]
        revenue = int(employees * INDUSTRIES[industry][1] * rng.uniform(0.5, 1.6))
        rows[domain] = {
            "domain": domain,
            "company_name": name,
            "employees": employees,
            "employee_range": employee_range(employees),
            "industry": industry,
            "revenue_range": revenue_range(revenue),
            "country": country,
        }
    return sorted(rows.values(), key=lambda row: str(row["domain"]))


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data/companies.csv")
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(companies(300))


if __name__ == "__main__":
    main()
