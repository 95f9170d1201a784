"""pandas JSON in every orient <-> rows, the training schema, bulk bodies and data keys.

One module per concept; importers name the submodule:

- `rows`: `Rows`, one value for a table's rows from the decoded body to the model and back;
- `schema`: `Schema`, the training schema, and conforming `x` to it (`Schema.rows`);
- `orients`: decoding `x` and `y` from each pandas orient (`ORIENTS`, `orient_of`);
- `fast`: the numeric fast paths, straight into one float64 array;
- `json`: JSON text (exact floats, 64-bit integers) and simdjson's lazy document;
- `labels`: labels typed as `read_json` types them;
- `bulk` and `limits`: Arrow, Parquet and CSV bodies, and the bounds checked before decoding;
- `encode`: answers, as pandas JSON values, Arrow streams and response bytes;
- `keys`: `training_key` and `name_key`.

Nothing here imports scikit-learn, falcon, peewee or prometheus, and pyarrow only when a body
needs it; this file imports nothing, so a user of one submodule loads only what it needs.
"""
