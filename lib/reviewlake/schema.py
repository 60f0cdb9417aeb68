"""The one place that knows the columns of the Amazon Customer Reviews dataset.

The public dataset is published as tab-separated files with a header line, 15 columns,
no quoting and no escaping. The lake (ingest's output) keeps those 15 columns typed and adds
``year`` and ``source_file``; ``product_category`` is the partition column.
"""
from __future__ import annotations

# (name, lake type) in the order of the TSV layout.
RAW_COLUMNS: list[tuple[str, str]] = [
    ("marketplace", "string"),
    ("customer_id", "string"),
    ("review_id", "string"),
    ("product_id", "string"),
    ("product_parent", "string"),
    ("product_title", "string"),
    ("product_category", "string"),
    ("star_rating", "int"),
    ("helpful_votes", "int"),
    ("total_votes", "int"),
    ("vine", "string"),
    ("verified_purchase", "string"),
    ("review_headline", "string"),
    ("review_body", "string"),
    ("review_date", "date"),
]

COLUMN_NAMES: list[str] = [name for name, _ in RAW_COLUMNS]
N_COLUMNS = len(RAW_COLUMNS)
HEADER_LINE = "\t".join(COLUMN_NAMES)
INT_COLUMNS = [name for name, kind in RAW_COLUMNS if kind == "int"]
DATE_COLUMNS = [name for name, kind in RAW_COLUMNS if kind == "date"]
DATE_FORMAT = "yyyy-MM-dd"

PARTITION_COLUMN = "product_category"
DERIVED_COLUMNS: list[tuple[str, str]] = [("year", "int"), ("source_file", "string")]

# Column order of the Parquet lake's data files (the partition column lives in the path).
LAKE_COLUMNS: list[tuple[str, str]] = (
    [(n, t) for n, t in RAW_COLUMNS if n != PARTITION_COLUMN] + DERIVED_COLUMNS
)

LABEL_COLUMN = "star_rating"
TEXT_COLUMN = "review_body"
ID_COLUMN = "review_id"
STAR_RATINGS = (1, 2, 3, 4, 5)
MARKETPLACES = ("US", "UK", "DE", "JP", "FR")

# The 43 product categories of the public dataset (the book's Table 5-3).
PRODUCT_CATEGORIES: tuple[str, ...] = (
    "Books", "Digital_Ebook_Purchase", "Wireless", "PC", "Home", "Apparel",
    "Health & Personal Care", "Beauty", "Video DVD", "Mobile_Apps", "Kitchen", "Toys",
    "Sports", "Music", "Shoes", "Digital_Video_Download", "Automotive", "Electronics",
    "Pet Products", "Office Products", "Home Improvement", "Lawn and Garden", "Grocery",
    "Outdoors", "Camera", "Video Games", "Jewelry", "Baby", "Tools",
    "Digital_Music_Purchase", "Watches", "Musical Instruments", "Furniture",
    "Home Entertainment", "Video", "Luggage", "Software", "Gift Card",
    "Digital_Video_Games", "Mobile_Electronics", "Digital_Software", "Major Appliances",
    "Personal_Care_Applications",
)


def raw_ddl() -> str:
    """DDL of the TSV as Spark's csv reader would see it (used by benchmarks and docs)."""
    return ", ".join(f"`{n}` {t}" for n, t in RAW_COLUMNS)


def lake_ddl() -> str:
    """DDL of the lake as read back with ``spark.read.parquet(LAKE/reviews)``."""
    cols = LAKE_COLUMNS + [(PARTITION_COLUMN, "string")]
    return ", ".join(f"`{n}` {t}" for n, t in cols)
