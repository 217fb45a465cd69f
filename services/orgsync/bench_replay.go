package orgsync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/orgsync/orgsync/pkg/genesys"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// recordedCall is one API request as the pipeline sent it.
type recordedCall struct {
	Method, URL, Auth, ContentType string
	Body                           []byte
}

// callRecorder is an http.RoundTripper that forwards to
// genesys.DefaultTransport and, between Start and Stop, appends every API
// request (token grants excluded) to a temporary file, so recording
// 100,000s of calls does not inflate the process's memory. A record is its
// fields length-prefixed (appendCall): the recorder is an instrument, and
// what it costs the pipeline's calls (gob and a body copy cost 2 % of a
// 2,000 × 10 clone's CPU) is not the pipeline's.
type callRecorder struct {
	base http.RoundTripper

	on     atomic.Bool
	mu     sync.Mutex
	file   *os.File
	buf    *bufio.Writer
	count  int
	encErr error
}

func newCallRecorder(dir string) (*callRecorder, error) {
	f, err := os.CreateTemp(dir, "bench-calls-*.bin")
	if err != nil {
		return nil, fmt.Errorf("bench: call recording file: %w", err)
	}
	return &callRecorder{base: genesys.DefaultTransport, file: f, buf: bufio.NewWriterSize(f, 1<<20)}, nil
}

// RoundTrip records req (when recording) and sends it.
func (r *callRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.on.Load() && req.URL.Path != "/oauth/token" {
		var body []byte
		if req.GetBody != nil { // a copy of the body without consuming it (bytes.Reader bodies)
			rc, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			var b bytes.Buffer
			_, err = b.ReadFrom(rc)
			_ = rc.Close()
			if err != nil {
				return nil, err
			}
			body = b.Bytes()
		}
		rec := appendCall(nil, recordedCall{Method: req.Method, URL: req.URL.String(), Auth: req.Header.Get("Authorization"),
			ContentType: req.Header.Get("Content-Type"), Body: body})
		r.mu.Lock()
		if r.encErr == nil {
			_, r.encErr = r.buf.Write(rec)
			r.count++
		}
		r.mu.Unlock()
	}
	return r.base.RoundTrip(req)
}

// appendCall appends c's fields to b, each length-prefixed (uvarint).
func appendCall(b []byte, c recordedCall) []byte {
	for _, f := range [][]byte{[]byte(c.Method), []byte(c.URL), []byte(c.Auth), []byte(c.ContentType), c.Body} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// readCall reads one record written by appendCall (io.EOF at the end).
func readCall(r *bufio.Reader) (recordedCall, error) {
	var fields [5][]byte
	for i := range fields {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return recordedCall{}, err
		}
		fields[i] = make([]byte, n)
		if _, err := io.ReadFull(r, fields[i]); err != nil {
			return recordedCall{}, err
		}
	}
	return recordedCall{Method: string(fields[0]), URL: string(fields[1]), Auth: string(fields[2]),
		ContentType: string(fields[3]), Body: fields[4]}, nil
}

// Start and Stop switch recording on and off.
func (r *callRecorder) Start() { r.on.Store(true) }
func (r *callRecorder) Stop()  { r.on.Store(false) }

// Count is the number of calls recorded.
func (r *callRecorder) Count() int { r.mu.Lock(); defer r.mu.Unlock(); return r.count }

// Close removes the recording.
func (r *callRecorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.file.Close()
	return os.Remove(r.file.Name())
}

// Replay sends every recorded call again, directly over HTTP with the
// token it carried, in one tight loop per token (= per org) running in
// parallel, and returns how many calls were answered and how long that
// took. Any answer counts (a replayed create gets 409): the point is the
// cost of the same requests without the pipeline around them.
func (r *callRecorder) Replay(ctx context.Context) (int, time.Duration, error) {
	r.mu.Lock()
	if r.encErr != nil {
		r.mu.Unlock()
		return 0, 0, fmt.Errorf("bench: recording calls: %w", r.encErr)
	}
	if err := r.buf.Flush(); err != nil {
		r.mu.Unlock()
		return 0, 0, fmt.Errorf("bench: flush call recording: %w", err)
	}
	name := r.file.Name()
	r.mu.Unlock()

	f, err := os.Open(name)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: open call recording: %w", err)
	}
	defer f.Close()
	in := bufio.NewReaderSize(f, 1<<20)

	transport := genesys.NewTransport() // the pipeline's settings: a fair comparison
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		done     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		loops    = map[string]chan recordedCall{}
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err; cancel() }) }
	loop := func(calls <-chan recordedCall) {
		defer wg.Done()
		for c := range calls {
			if ctx.Err() != nil {
				continue // drain
			}
			req, err := http.NewRequestWithContext(ctx, c.Method, c.URL, bytes.NewReader(c.Body))
			if err != nil {
				fail(fmt.Errorf("bench: replay %s %s: %w", c.Method, c.URL, err))
				continue
			}
			req.Header.Set("Authorization", c.Auth)
			req.Header.Set("Accept", "application/json")
			if c.ContentType != "" {
				req.Header.Set("Content-Type", c.ContentType)
			}
			resp, err := client.Do(req)
			if err != nil {
				fail(fmt.Errorf("bench: replay %s %s: %w", c.Method, req.URL.Path, err))
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			done.Add(1)
		}
	}
	start := time.Now()
	for {
		c, err := readCall(in)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fail(fmt.Errorf("bench: read call recording: %w", err))
			}
			break
		}
		ch, ok := loops[c.Auth]
		if !ok {
			ch = make(chan recordedCall, 1024)
			loops[c.Auth] = ch
			wg.Add(1)
			go loop(ch)
		}
		select {
		case ch <- c:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	for _, ch := range loops {
		close(ch)
	}
	wg.Wait()
	wall := time.Since(start)
	if firstErr != nil {
		return int(done.Load()), wall, firstErr
	}
	return int(done.Load()), wall, ctx.Err()
}
