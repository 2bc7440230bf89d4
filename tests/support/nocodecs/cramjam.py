"""Put this directory first on PYTHONPATH and ``import cramjam`` fails: aiokafka then has
no snappy, lz4 or zstd (aiokafka/codec.py imports cramjam optionally), as on a machine
where the codec extras are missing. tests/integration/test_undecodable.py runs a node so."""

raise ImportError("cramjam is hidden on purpose (tests/support/nocodecs)")
