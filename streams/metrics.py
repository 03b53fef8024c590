"""Prometheus metrics of the streams worker. Labels never carry record content or ids (no PII).

Lag is the age of the last processed message's produce timestamp, never broker watermarks
(they are wrong on the embedded broker, PLATFORM.md).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_IN = Counter("lorafeed_streams_records_in_total", "Raw messages taken from records.raw")
RECORDS_INDEXED = Counter("lorafeed_streams_records_indexed_total", "Records written to Milvus")
CHUNKS_INDEXED = Counter("lorafeed_streams_chunks_indexed_total", "Chunks upserted to Milvus")
RECORDS_DEDUPED = Counter(
    "lorafeed_streams_records_deduped_total", "Records kept as aliases of a twin", ["kind"]
)
RECORDS_DLQ = Counter(
    "lorafeed_streams_records_dlq_total", "Records sent to records.dlq", ["reason"]
)
EMBED_BATCH = Histogram(
    "lorafeed_streams_embed_batch_texts", "Chunks per embedding call",
    buckets=(1, 4, 16, 32, 64, 128, 256, 512, 1024),
)
EMBED_SECONDS = Histogram("lorafeed_streams_embed_seconds", "Wall time of one embedding call")
BATCH_SECONDS = Histogram("lorafeed_streams_batch_seconds", "Wall time to index one batch")
RETRIES = Counter("lorafeed_streams_batch_retries_total", "Batches retried after an outage")
LAG_SECONDS = Gauge(
    "lorafeed_streams_lag_seconds", "Now minus the produce time of the last processed message"
)
