"""Writing the scores as sharded CSV files."""

from __future__ import annotations

from keras_deepad.beam._common import _OUTPUT_SUFFIX, beam
from keras_deepad.beam.blocks import ScoreResult


# -------------------------------------------------------------------- writer
def _csv_field(value) -> str:
    text = str(value)
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_lines(scored) -> str:
    """A `ScoredBlock` (or one `ScoreResult`) as CSV lines, without the final newline."""
    if isinstance(scored, ScoreResult):
        key = scored.key if isinstance(scored.key, tuple) else (scored.key,)
        fields = [*map(_csv_field, key), f"{scored.score:.9g}", str(int(scored.is_anomaly))]
        return ",".join([*fields, f"{scored.threshold:.9g}"])
    tail = f"{scored.threshold:.9g}"
    pairs = zip(scored.score.tolist(), scored.is_anomaly.tolist(), strict=True)
    if scored.keys is None:
        path = _csv_field(scored.path)
        return "\n".join(
            f"{path},{scored.start + i},{s:.9g},{a},{tail}" for i, (s, a) in enumerate(pairs)
        )
    keys = map(_csv_field, scored.keys)
    return "\n".join(f"{k},{s:.9g},{a},{tail}" for k, (s, a) in zip(keys, pairs, strict=True))


class WriteScores(beam.PTransform):
    """Writes scores as sharded CSV: `<prefix>-SSSSS-of-NNNNN.csv`, a header in each.

    Takes `ScoredBlock`s or `ScoreResult`s. Columns: the key (`file,row`, or
    the `key_column` name), then `score,is_anomaly,threshold`; scores are
    written with 9 significant digits (float32 round-trips exactly).

    Args:
        output_prefix: path prefix of the shards (local or any Beam file system).
        key_header: the key's column names.
        num_shards: number of output files (0: the runner decides).
    """

    def __init__(self, output_prefix: str, key_header=("file", "row"), num_shards: int = 0):
        super().__init__()
        if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 0:
            raise ValueError(f"num_shards must be an integer >= 0. Received: {num_shards!r}")
        self.output_prefix = str(output_prefix)
        self.header = ",".join([*map(_csv_field, key_header), "score", "is_anomaly", "threshold"])
        self.num_shards = num_shards

    def expand(self, scores):
        return (
            scores
            | "Format" >> beam.Map(_csv_lines)
            | "Write"
            >> beam.io.WriteToText(
                self.output_prefix,
                file_name_suffix=_OUTPUT_SUFFIX,
                num_shards=self.num_shards,
                header=self.header,
            )
        )
