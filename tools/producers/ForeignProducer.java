// A producer, consumer and batch auditor for kstate's topic that is NOT aiokafka: Apache
// Kafka's own Java client. kstate's tests drive it to prove that kstate reads what other
// programs write (any compression.type, transactions, 0-byte values, bytes it cannot use).
//
// Run as a single file on Kafka's classpath (kafka-clients and the codec jars):
//   java -cp '<KAFKA_CACHE>/libs/*' ForeignProducer.java SUBCOMMAND ...
//
//   produce --bootstrap B --topic T [--codec none|gzip|snappy|lz4|zstd]
//           [--transactional-id ID] [--linger-ms N]          script on stdin, see below
//           [--transaction-timeout-ms N]     the producer's transaction.timeout.ms
//           [--create N]             first create T: compacted, N partitions (one JVM less)
//   consume --bootstrap B --topic T [--isolation read_committed|read_uncommitted]
//           [--batches]                                       every record, then exits
//   batches --bootstrap B --topic T                           every record batch's header
//   create-topic --bootstrap B --topic T [--topic T2 ...] [--partitions N] [--compact]
//   warm                                                      load classes, no broker
//
// Script lines (produce), one command a line; blank lines and lines starting '#' are skipped:
//   put EMAIL NAME...        value {"name":NAME,"email":EMAIL} (rest of the line is NAME)
//   delete-null EMAIL        null value (a tombstone)
//   delete-empty EMAIL       0-byte value
//   raw EMAIL BASE64         value bytes as given
//   rawkey BASE64KEY BASE64VALUE|-|null   key bytes as given ('-' 0-byte, 'null' null value)
//   nullkey BASE64VALUE      null key
//   header NAME VALUE        a header on the next record only (repeatable)
//   header-null NAME         a header with a null value on the next record only
//   partition N | auto       explicit partition for the records that follow, or the default
//   begin | commit | abort   a transaction (needs --transactional-id)
//   flush                    wait until every record so far is acknowledged
//   hang                     flush, then exit at once (status 0) without ending the
//                            transaction or closing the producer, as a producer killed in
//                            the middle of one: it stays open until the coordinator aborts
//                            it, transaction.timeout.ms after it began
//
// Output: one JSON line on stdout per record sent, {"line":L,"partition":P,"offset":O}, in
// script order, printed once the broker acknowledged it (acks=all). Records are sent
// asynchronously and collected at flush/commit/abort/end, so that several records share a
// compressed batch. Any error: a message on stderr and exit status 1.
// Consume prints {"partition","offset","key_b64","value_b64","headers":{name:b64}} per
// record (null for a null key, value or header value), sorted by partition and offset.
// Batch lines are {"batch":{"partition","base_offset","last_offset","count","compression",
// "transactional","control","magic"}}; they come from a raw Fetch (v11) because the consumer
// API hides batches, and show which codec a producer really used.

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ForeignProducer {
    /** The real stdout: System.out is pointed at stderr so client logging never mixes in. */
    static PrintStream out;

    static final class Fail extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Fail(String message) { super(message); }
    }

    public static void main(String[] argv) {
        out = System.out;
        System.setOut(System.err);
        try {
            if (argv.length == 0) throw new Fail("usage: ForeignProducer produce|consume|batches|create-topic ...");
            Map<String, List<String>> opts = parseOptions(argv);
            switch (argv[0]) {
                case "produce" -> produce(opts);
                case "consume" -> consume(opts);
                case "batches" -> batches(opts);
                case "create-topic" -> createTopics(opts);
                case "warm" -> warm();
                default -> throw new Fail("unknown sub-command " + argv[0]);
            }
            out.flush();
            System.exit(0);
        } catch (Fail e) {
            System.err.println("ForeignProducer: " + e.getMessage());
        } catch (Exception e) {
            System.err.println("ForeignProducer: " + e);
            e.printStackTrace(System.err);
        }
        out.flush();
        System.exit(1);  // the client's non-daemon threads must not keep a failed run alive
    }

    /** Loads the client classes without a broker, for a class-data-sharing archive
     * (-XX:ArchiveClassesAtExit) that makes every later run start faster. */
    static void warm() {
        Properties p = new Properties();
        p.put("bootstrap.servers", "127.0.0.1:9");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        new KafkaProducer<byte[], byte[]>(p).close(Duration.ZERO);
        new KafkaConsumer<byte[], byte[]>(p).close();  // no group: nothing to leave
        Admin.create(Map.of("bootstrap.servers", (Object) "127.0.0.1:9")).close(Duration.ZERO);
        out.println("{\"warm\":true}");
    }

    // ---- options -------------------------------------------------------------------------

    static final List<String> FLAGS = List.of("--compact", "--batches");

    static Map<String, List<String>> parseOptions(String[] argv) {
        Map<String, List<String>> opts = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            String name = argv[i];
            if (!name.startsWith("--")) throw new Fail("unexpected argument " + name);
            if (FLAGS.contains(name)) {
                opts.computeIfAbsent(name, k -> new ArrayList<>()).add("true");
                continue;
            }
            if (i + 1 >= argv.length) throw new Fail(name + " needs a value");
            opts.computeIfAbsent(name, k -> new ArrayList<>()).add(argv[++i]);
        }
        return opts;
    }

    static String opt(Map<String, List<String>> opts, String name, String dflt) {
        List<String> v = opts.get(name);
        if (v == null) {
            if (dflt == null) throw new Fail(name + " is required");
            return dflt;
        }
        return v.get(v.size() - 1);
    }

    // ---- produce -------------------------------------------------------------------------

    static final Pattern COMMAND = Pattern.compile("^(\\S+)(?:\\s+(.*))?$");

    record Pending(int line, Future<RecordMetadata> future) {}

    static void produce(Map<String, List<String>> opts) throws Exception {
        String topic = opt(opts, "--topic", null);
        String codec = opt(opts, "--codec", "none");
        if (!List.of("none", "gzip", "snappy", "lz4", "zstd").contains(codec)) {
            throw new Fail("--codec must be none, gzip, snappy, lz4 or zstd, not " + codec);
        }
        String txId = opt(opts, "--transactional-id", "");
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, opt(opts, "--bootstrap", null));
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "kstate-foreign-producer");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.LINGER_MS_CONFIG, opt(opts, "--linger-ms", "20"));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        if (!txId.isEmpty()) p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txId);
        if (opts.containsKey("--transaction-timeout-ms")) {
            p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, opt(opts, "--transaction-timeout-ms", null));
        }

        if (opts.containsKey("--create")) {
            Map<String, List<String>> create = new HashMap<>(opts);
            create.put("--partitions", opts.get("--create"));
            create.put("--compact", List.of("true"));
            createTopics(create);
        }
        List<Pending> pending = new ArrayList<>();
        RecordHeaders headers = new RecordHeaders();
        Integer partition = null;
        boolean inTx = false;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            if (!txId.isEmpty()) producer.initTransactions();
            String text;
            int lineNo = 0;
            while ((text = in.readLine()) != null) {
                lineNo++;
                String line = text.strip();
                if (line.isEmpty() || line.startsWith("#")) continue;
                Matcher m = COMMAND.matcher(line);
                if (!m.matches()) throw new Fail("line " + lineNo + ": cannot parse: " + line);
                String cmd = m.group(1);
                String rest = m.group(2) == null ? "" : m.group(2);
                String[] args = rest.isEmpty() ? new String[0] : rest.split("\\s+");
                byte[] key;
                byte[] value;
                try {
                    switch (cmd) {
                        case "put" -> {
                            need(args, 1, -1, cmd);
                            String email = args[0];
                            String name = rest.substring(email.length()).strip();
                            key = utf8(email);
                            value = utf8("{\"name\":" + jsonString(name)
                                         + ",\"email\":" + jsonString(email) + "}");
                        }
                        case "delete-null" -> { need(args, 1, 1, cmd); key = utf8(args[0]); value = null; }
                        case "delete-empty" -> { need(args, 1, 1, cmd); key = utf8(args[0]); value = new byte[0]; }
                        case "raw" -> { need(args, 2, 2, cmd); key = utf8(args[0]); value = b64(args[1]); }
                        case "rawkey" -> {
                            need(args, 2, 2, cmd);
                            key = b64(args[0]);
                            value = switch (args[1]) {
                                case "-" -> new byte[0];
                                case "null" -> null;
                                default -> b64(args[1]);
                            };
                        }
                        case "nullkey" -> { need(args, 1, 1, cmd); key = null; value = b64(args[0]); }
                        case "header" -> {
                            need(args, 1, -1, cmd);
                            String v = rest.substring(args[0].length()).strip();
                            headers.add(args[0], utf8(v));
                            continue;
                        }
                        case "header-null" -> {
                            need(args, 1, 1, cmd);
                            headers.add(args[0], null);
                            continue;
                        }
                        case "partition" -> {
                            need(args, 1, 1, cmd);
                            partition = args[0].equals("auto") ? null : Integer.valueOf(args[0]);
                            continue;
                        }
                        case "begin" -> {
                            need(args, 0, 0, cmd);
                            if (txId.isEmpty()) throw new Fail("begin needs --transactional-id");
                            if (inTx) throw new Fail("begin inside a transaction");
                            producer.beginTransaction();
                            inTx = true;
                            continue;
                        }
                        case "commit", "abort" -> {
                            need(args, 0, 0, cmd);
                            if (!inTx) throw new Fail(cmd + " without begin");
                            // Every record reaches the log first: an aborted transaction's
                            // records must really be there for read_uncommitted to see.
                            producer.flush();
                            drain(pending, producer, topic);
                            if (cmd.equals("commit")) producer.commitTransaction();
                            else producer.abortTransaction();
                            inTx = false;
                            continue;
                        }
                        case "flush" -> {
                            need(args, 0, 0, cmd);
                            producer.flush();
                            drain(pending, producer, topic);
                            continue;
                        }
                        case "hang" -> {
                            need(args, 0, 0, cmd);
                            producer.flush();
                            drain(pending, producer, topic);
                            out.flush();
                            Runtime.getRuntime().halt(0);  // no close: nothing is ended
                            continue;
                        }
                        default -> throw new Fail("unknown command " + cmd);
                    }
                } catch (IllegalArgumentException e) {  // bad base64 or partition number
                    throw new Fail("line " + lineNo + ": " + e.getMessage());
                } catch (Fail e) {
                    throw new Fail("line " + lineNo + ": " + e.getMessage());
                }
                if (partition != null && partition >= producer.partitionsFor(topic).size()) {
                    throw new Fail("line " + lineNo + ": topic " + topic + " has no partition " + partition);
                }
                ProducerRecord<byte[], byte[]> rec =
                    new ProducerRecord<>(topic, partition, key, value, headers);
                headers = new RecordHeaders();
                try {
                    pending.add(new Pending(lineNo, producer.send(rec)));
                } catch (RuntimeException e) {  // e.g. a partition the topic does not have
                    throw new Fail("line " + lineNo + ": send failed: " + e);
                }
            }
            if (inTx) throw new Fail("the script ended inside a transaction (no commit/abort)");
            producer.flush();
            drain(pending, producer, topic);
        }
    }

    static void need(String[] args, int min, int max, String cmd) {
        if (args.length < min || (max >= 0 && args.length > max)) {
            throw new Fail(cmd + ": wrong number of arguments");
        }
    }

    static void drain(List<Pending> pending, KafkaProducer<byte[], byte[]> producer, String topic) {
        for (Pending p : pending) {
            RecordMetadata md;
            try {
                md = p.future().get();
            } catch (ExecutionException e) {
                throw new Fail("line " + p.line() + ": send failed: " + e.getCause()
                               + " (producer: " + sendCounts(producer, topic) + ")");
            } catch (InterruptedException e) {
                throw new Fail("interrupted");
            }
            out.println("{\"line\":" + p.line() + ",\"partition\":" + md.partition()
                        + ",\"offset\":" + md.offset() + "}");
        }
        pending.clear();
        out.flush();
    }

    /** The producer's own retry and error counts for the topic, so that a failed send says
     * whether the broker kept refusing the records (retries) or never answered. */
    static String sendCounts(KafkaProducer<byte[], byte[]> producer, String topic) {
        StringBuilder b = new StringBuilder();
        producer.metrics().forEach((name, metric) -> {
            String n = name.name();
            boolean wanted = name.group().equals("producer-topic-metrics")
                ? topic.equals(name.tags().get("topic")) && n.endsWith("-total")
                : name.group().equals("producer-metrics")
                  && (n.equals("requests-in-flight") || n.equals("request-total")
                      || n.equals("response-total") || n.equals("metadata-wait-time-ns-total"));
            if (wanted) b.append(b.length() == 0 ? "" : ", ").append(n).append('=').append(metric.metricValue());
        });
        return b.toString();
    }

    static byte[] utf8(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    static byte[] b64(String s) { return Base64.getDecoder().decode(s); }

    static String b64OrNull(byte[] b) {
        return b == null ? "null" : "\"" + Base64.getEncoder().encodeToString(b) + "\"";
    }

    /** A JSON string literal: quotes, backslashes and control characters escaped. */
    static String jsonString(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                case '\b' -> b.append("\\b");
                case '\f' -> b.append("\\f");
                default -> {
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
                }
            }
        }
        return b.append('"').toString();
    }

    // ---- topics and partitions -----------------------------------------------------------

    static Admin admin(Map<String, List<String>> opts) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, opt(opts, "--bootstrap", null));
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "kstate-foreign-admin");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        return Admin.create(p);
    }

    static void createTopics(Map<String, List<String>> opts) throws Exception {
        List<String> topics = opts.get("--topic");
        if (topics == null) throw new Fail("--topic is required");
        int partitions = Integer.parseInt(opt(opts, "--partitions", "1"));
        List<NewTopic> news = new ArrayList<>();
        for (String t : topics) {
            NewTopic n = new NewTopic(t, java.util.Optional.of(partitions), java.util.Optional.empty());
            if (opts.containsKey("--compact")) n.configs(Map.of("cleanup.policy", "compact"));
            news.add(n);
        }
        try (Admin admin = admin(opts)) {
            admin.createTopics(news).all().get();
            awaitWritable(admin, topics, partitions);
        }
    }

    /** Returns once every partition's leader hosts it: a ListOffsets is answered by the
     * leader's log. A create returns when the controller committed the topic, which can be
     * before the broker made the logs; an idempotent Java producer that bursts into a
     * partition in that gap was seen to expire its batches. The admin client does not
     * retry a ListOffsets whose topic its metadata does not know yet (seen in CI), so
     * retriable errors are retried here, for up to 30 s. */
    static void awaitWritable(Admin admin, List<String> topics, int partitions) throws Exception {
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        for (String t : topics) {
            for (int i = 0; i < partitions; i++) latest.put(new TopicPartition(t, i), OffsetSpec.latest());
        }
        long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
        while (true) {
            try {
                admin.listOffsets(latest).all().get();
                return;
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof RetriableException) || System.nanoTime() > deadline) {
                    throw new Fail("created, but not writable: " + e.getCause());
                }
                Thread.sleep(100);
            }
        }
    }

    static TopicDescription describe(Admin admin, String topic) throws Exception {
        try {
            return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
        } catch (ExecutionException e) {
            throw new Fail("topic " + topic + ": " + e.getCause());
        }
    }

    // ---- consume -------------------------------------------------------------------------

    static void consume(Map<String, List<String>> opts) throws Exception {
        String topic = opt(opts, "--topic", null);
        String isolation = opt(opts, "--isolation", "read_committed");
        if (!isolation.equals("read_committed") && !isolation.equals("read_uncommitted")) {
            throw new Fail("--isolation must be read_committed or read_uncommitted");
        }
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, opt(opts, "--bootstrap", null));
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "kstate-foreign-consumer");
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "50");  // the data is there: do not linger
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo i : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
                parts.add(new TopicPartition(topic, i.partition()));
            }
            if (parts.isEmpty()) throw new Fail("topic " + topic + " does not exist");
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            // The consumer's isolation level decides: high watermarks, or last stable offsets.
            Map<TopicPartition, Long> end = consumer.endOffsets(parts, Duration.ofSeconds(30));
            long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            while (true) {
                boolean done = true;
                for (TopicPartition tp : parts) {
                    if (consumer.position(tp, Duration.ofSeconds(30)) < end.get(tp)) done = false;
                }
                if (done) break;
                if (System.nanoTime() > deadline) {
                    throw new Fail("consume did not reach the end offsets " + end + " in 30 s");
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    if (r.offset() < end.get(new TopicPartition(r.topic(), r.partition()))) got.add(r);
                }
            }
        }
        got.sort((a, b) -> a.partition() != b.partition()
                 ? Integer.compare(a.partition(), b.partition()) : Long.compare(a.offset(), b.offset()));
        for (ConsumerRecord<byte[], byte[]> r : got) {
            StringBuilder h = new StringBuilder("{");
            Map<String, byte[]> hs = new LinkedHashMap<>();
            for (Header x : r.headers()) hs.put(x.key(), x.value());
            for (Map.Entry<String, byte[]> e : hs.entrySet()) {
                if (h.length() > 1) h.append(',');
                h.append(jsonString(e.getKey())).append(':').append(b64OrNull(e.getValue()));
            }
            h.append('}');
            out.println("{\"partition\":" + r.partition() + ",\"offset\":" + r.offset()
                        + ",\"key_b64\":" + b64OrNull(r.key()) + ",\"value_b64\":" + b64OrNull(r.value())
                        + ",\"headers\":" + h + "}");
        }
        if (opts.containsKey("--batches")) batches(opts);
    }

    // ---- batches: a raw Fetch, because only the wire shows a batch's codec ----------------

    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};

    static void batches(Map<String, List<String>> opts) throws Exception {
        String topic = opt(opts, "--topic", null);
        Map<Integer, Node> leaders = new LinkedHashMap<>();
        Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> start;
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> end;
        try (Admin admin = admin(opts)) {
            for (TopicPartitionInfo i : describe(admin, topic).partitions()) {
                if (i.leader() == null) throw new Fail("partition " + i.partition() + " has no leader");
                leaders.put(i.partition(), i.leader());
                earliest.put(new TopicPartition(topic, i.partition()), OffsetSpec.earliest());
                latest.put(new TopicPartition(topic, i.partition()), OffsetSpec.latest());
            }
            ListOffsetsResult first = admin.listOffsets(earliest);
            ListOffsetsResult last = admin.listOffsets(latest);
            start = first.all().get();
            end = last.all().get();
        }
        Map<String, Socket> sockets = new HashMap<>();
        try {
            int correlation = 0;
            for (Map.Entry<Integer, Node> e : leaders.entrySet()) {
                int part = e.getKey();
                TopicPartition tp = new TopicPartition(topic, part);
                long offset = start.get(tp).offset();
                long stop = end.get(tp).offset();
                Node n = e.getValue();
                Socket s = sockets.get(n.host() + ":" + n.port());
                if (s == null) {
                    s = new Socket(n.host(), n.port());
                    s.setSoTimeout(30000);
                    sockets.put(n.host() + ":" + n.port(), s);
                }
                while (offset < stop) {
                    ByteBuffer records = fetch(s, ++correlation, topic, part, offset);
                    long next = printBatches(part, records);
                    if (next <= offset) throw new Fail("fetch at " + tp + "@" + offset + " made no progress");
                    offset = next;
                }
            }
        } finally {
            for (Socket s : sockets.values()) s.close();
        }
    }

    /** Fetch v11 (topic names, zstd allowed, not yet flexible) of one partition; its records. */
    static ByteBuffer fetch(Socket s, int correlation, String topic, int partition, long offset)
            throws IOException {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        DataOutputStream w = new DataOutputStream(buf);
        w.writeShort(1);            // api key: Fetch
        w.writeShort(11);           // api version
        w.writeInt(correlation);
        writeString(w, "kstate-foreign-batches");
        w.writeInt(-1);             // replica id: a consumer
        w.writeInt(0);              // max wait ms
        w.writeInt(0);              // min bytes
        w.writeInt(32 << 20);       // max bytes
        w.writeByte(0);             // read_uncommitted: aborted and control batches too
        w.writeInt(0);              // session id: none
        w.writeInt(-1);             // session epoch: a sessionless full fetch
        w.writeInt(1);              // topics
        writeString(w, topic);
        w.writeInt(1);              // partitions
        w.writeInt(partition);
        w.writeInt(-1);             // current leader epoch: unknown
        w.writeLong(offset);
        w.writeLong(-1);            // log start offset: a consumer does not know
        w.writeInt(16 << 20);       // partition max bytes
        w.writeInt(0);              // forgotten topics
        writeString(w, "");         // rack id
        w.flush();
        DataOutputStream sock = new DataOutputStream(s.getOutputStream());
        sock.writeInt(buf.size());
        buf.writeTo(sock);
        sock.flush();

        DataInputStream r = new DataInputStream(s.getInputStream());
        byte[] body = new byte[r.readInt()];
        r.readFully(body);
        ByteBuffer b = ByteBuffer.wrap(body);
        if (b.getInt() != correlation) throw new Fail("fetch: correlation id mismatch");
        b.getInt();                 // throttle time
        short top = b.getShort();
        if (top != 0) throw new Fail("fetch: error code " + top);
        b.getInt();                 // session id
        if (b.getInt() != 1) throw new Fail("fetch: expected one topic");
        skipString(b);
        if (b.getInt() != 1) throw new Fail("fetch: expected one partition");
        b.getInt();                 // partition index
        short err = b.getShort();
        if (err != 0) throw new Fail("fetch " + topic + "-" + partition + "@" + offset + ": error code " + err);
        b.getLong();                // high watermark
        b.getLong();                // last stable offset
        b.getLong();                // log start offset
        int aborted = b.getInt();
        if (aborted > 0) b.position(b.position() + aborted * 16);
        b.getInt();                 // preferred read replica
        int size = b.getInt();
        if (size < 0) return ByteBuffer.allocate(0);
        ByteBuffer records = b.slice();
        records.limit(size);
        return records;
    }

    /** Prints the header of each complete batch; returns the offset after the last one. */
    static long printBatches(int partition, ByteBuffer b) {
        long next = -1;
        while (b.remaining() >= 12) {
            int start = b.position();
            long base = b.getLong();
            int length = b.getInt();
            if (b.remaining() < length) break;  // a partial batch at the end of the response
            b.getInt();                         // partition leader epoch
            byte magic = b.get();
            b.getInt();                         // crc
            short attributes = b.getShort();
            int lastDelta = b.getInt();
            b.getLong();                        // base timestamp
            b.getLong();                        // max timestamp
            b.getLong();                        // producer id
            b.getShort();                       // producer epoch
            b.getInt();                         // base sequence
            int count = b.getInt();
            if (magic != 2) throw new Fail("batch at " + base + " has magic " + magic + ", not 2");
            int codec = attributes & 0x7;
            out.println("{\"batch\":{\"partition\":" + partition + ",\"base_offset\":" + base
                        + ",\"last_offset\":" + (base + lastDelta) + ",\"count\":" + count
                        + ",\"compression\":\"" + (codec < CODECS.length ? CODECS[codec] : "codec-" + codec)
                        + "\",\"transactional\":" + ((attributes & 0x10) != 0)
                        + ",\"control\":" + ((attributes & 0x20) != 0) + ",\"magic\":" + magic + "}}");
            next = base + lastDelta + 1;
            b.position(start + 12 + length);
        }
        return next;
    }

    static void writeString(DataOutputStream w, String s) throws IOException {
        byte[] b = utf8(s);
        w.writeShort(b.length);
        w.write(b);
    }

    static void skipString(ByteBuffer b) {
        short n = b.getShort();
        if (n > 0) b.position(b.position() + n);
    }
}
