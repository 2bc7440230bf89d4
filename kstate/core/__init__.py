"""kstate's pure core: the partitioner, users and records, the state table, the
assignment plan, the messages between actors, the outcomes of reads and writes, the
wire contract and the log line formats. No I/O and no framework: nothing here imports
trio, aiokafka, quart or hypercorn (import-linter checks it)."""
