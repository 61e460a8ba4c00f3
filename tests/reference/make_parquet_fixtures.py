"""Writes the small Parquet fixtures under tests/fixtures/data/ with pyarrow, the library the
Hugging Face hub uses to write dataset shards. Run: python tests/reference/make_parquet_fixtures.py
"""
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "data"
OUT.mkdir(parents=True, exist_ok=True)

alpaca = [
    {"instruction": f"Add {i} and {i + 1}.", "input": "" if i % 2 else f"Show your work for {i}.", "output": f"{i} + {i + 1} = {2 * i + 1}"}
    for i in range(25)
]
pq.write_table(pa.Table.from_pylist(alpaca), OUT / "alpaca_small.parquet", compression="snappy", row_group_size=10)

sharegpt = []
for i in range(12):
    conv = [
        {"from": "human", "value": f"Question {i}: what is {i} squared?"},
        {"from": "gpt", "value": f"{i} squared is {i * i}."},
    ]
    if i % 3 == 0:
        conv += [{"from": "human", "value": "And cubed?"}, {"from": "gpt", "value": f"{i ** 3}."}]
    sharegpt.append({"conversations": conv, "system": "You are a maths tutor." if i % 2 == 0 else ""})
pq.write_table(pa.Table.from_pylist(sharegpt), OUT / "sharegpt_small.parquet", compression="zstd", row_group_size=5)

print("wrote", sorted(p.name for p in OUT.glob("*.parquet")))
