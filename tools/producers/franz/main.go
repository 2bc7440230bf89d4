// Command franz writes to kstate's topic the way the seed app does: franz-go's kgo client
// with default settings (only the seed brokers and the default produce topic set), so
// kstate's tests see franz-go's default batching and compression, and its deletes by a
// 0-byte value.
//
//	franz -bootstrap host:port[,host:port] -topic T < script
//
// Script lines, one command a line (blank lines and lines starting '#' are skipped):
//
//	put EMAIL NAME...      value json.Marshal({name, email}), as the seed app encodes a user
//	delete-empty EMAIL     0-byte value (the seed app's delete)
//	delete-null EMAIL      null value (a tombstone)
//	raw EMAIL BASE64       value bytes as given
//	rawkey BASE64KEY BASE64VALUE|-|null   key bytes as given ('-' 0-byte, 'null' null value)
//	header NAME VALUE      a header on the next record only (repeatable)
//	flush                  produce every record since the last flush as one burst
//
// A burst is produced concurrently (Produce with a callback each, then wait for all), as a
// burst of the seed app's PUT handlers would be, so that batches hold several records. One
// JSON line per record goes to stdout once acknowledged, in script order:
// {"line":L,"partition":P,"offset":O}. Any error: a message on stderr and exit status 1.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type pending struct {
	line   int
	record *kgo.Record
}

type user struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

func main() {
	bootstrap := flag.String("bootstrap", "", "seed brokers, comma separated")
	topic := flag.String("topic", "", "topic to produce to")
	flag.Parse()
	if err := run(*bootstrap, *topic, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "franz:", err)
		os.Exit(1)
	}
}

func run(bootstrap, topic string, in io.Reader, out io.Writer) error {
	if bootstrap == "" || topic == "" {
		return errors.New("-bootstrap and -topic are required")
	}
	// Exactly the seed app's options: everything else (acks, idempotence, linger,
	// compression) stays franz-go's default, which is what these tests are about.
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.DefaultProduceTopic(topic),
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	w := bufio.NewWriter(out)
	defer w.Flush()
	var burst []pending
	var headers []kgo.RecordHeader
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	lineNo := 0
	for scanner.Scan() {
		lineNo++
		line := strings.TrimSpace(scanner.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd, rest, _ := strings.Cut(line, " ")
		rest = strings.TrimSpace(rest)
		args := strings.Fields(rest)
		rec, err := parse(cmd, rest, args)
		if err != nil {
			return fmt.Errorf("line %d: %w", lineNo, err)
		}
		switch {
		case cmd == "header":
			headers = append(headers, kgo.RecordHeader{Key: args[0], Value: []byte(strings.TrimSpace(rest[len(args[0]):]))})
		case cmd == "flush":
			if err := produce(cl, burst, w); err != nil {
				return err
			}
			burst = burst[:0]
		default:
			rec.Headers, headers = headers, nil
			burst = append(burst, pending{lineNo, rec})
		}
	}
	if err := scanner.Err(); err != nil {
		return err
	}
	return produce(cl, burst, w)
}

// parse turns one script command into a record (nil for header and flush).
func parse(cmd, rest string, args []string) (*kgo.Record, error) {
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%s: wrong number of arguments", cmd)
		}
		return nil
	}
	switch cmd {
	case "put":
		if len(args) < 1 {
			return nil, errors.New("put: wrong number of arguments")
		}
		email := args[0]
		value, err := json.Marshal(user{Name: strings.TrimSpace(rest[len(email):]), Email: email})
		if err != nil {
			return nil, err
		}
		return &kgo.Record{Key: []byte(email), Value: value}, nil
	case "delete-empty":
		if err := want(1); err != nil {
			return nil, err
		}
		return &kgo.Record{Key: []byte(args[0]), Value: []byte{}}, nil
	case "delete-null":
		if err := want(1); err != nil {
			return nil, err
		}
		return &kgo.Record{Key: []byte(args[0]), Value: nil}, nil
	case "raw":
		if err := want(2); err != nil {
			return nil, err
		}
		value, err := base64.StdEncoding.DecodeString(args[1])
		if err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
		return &kgo.Record{Key: []byte(args[0]), Value: value}, nil
	case "rawkey":
		if err := want(2); err != nil {
			return nil, err
		}
		key, err := base64.StdEncoding.DecodeString(args[0])
		if err != nil {
			return nil, fmt.Errorf("rawkey: %w", err)
		}
		var value []byte
		switch args[1] {
		case "-":
			value = []byte{}
		case "null":
		default:
			if value, err = base64.StdEncoding.DecodeString(args[1]); err != nil {
				return nil, fmt.Errorf("rawkey: %w", err)
			}
		}
		return &kgo.Record{Key: key, Value: value}, nil
	case "header":
		if len(args) < 1 {
			return nil, errors.New("header: wrong number of arguments")
		}
		return nil, nil
	case "flush":
		return nil, want(0)
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

// produce sends a burst concurrently and prints each record's place once all are acked.
func produce(cl *kgo.Client, burst []pending, w *bufio.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errs := make([]error, len(burst))
	var wg sync.WaitGroup
	wg.Add(len(burst))
	for i, p := range burst {
		cl.Produce(ctx, p.record, func(_ *kgo.Record, err error) {
			errs[i] = err
			wg.Done()
		})
	}
	wg.Wait()
	for i, p := range burst {
		if errs[i] != nil {
			return fmt.Errorf("line %d: produce failed: %w", p.line, errs[i])
		}
		fmt.Fprintf(w, "{\"line\":%d,\"partition\":%d,\"offset\":%d}\n", p.line, p.record.Partition, p.record.Offset)
	}
	return w.Flush()
}
