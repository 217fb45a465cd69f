package orgsync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/gob"
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
// 100,000s of calls does not inflate the process's memory.
type callRecorder struct {
	base http.RoundTripper

	mu     sync.Mutex
	on     bool
	file   *os.File
	buf    *bufio.Writer
	enc    *gob.Encoder
	count  int
	encErr error
}

func newCallRecorder(dir string) (*callRecorder, error) {
	f, err := os.CreateTemp(dir, "bench-calls-*.gob")
	if err != nil {
		return nil, fmt.Errorf("bench: call recording file: %w", err)
	}
	buf := bufio.NewWriterSize(f, 1<<20)
	return &callRecorder{base: genesys.DefaultTransport, file: f, buf: buf, enc: gob.NewEncoder(buf)}, nil
}

// RoundTrip records req (when recording) and sends it.
func (r *callRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	on := r.on
	r.mu.Unlock()
	if on && req.URL.Path != "/oauth/token" {
		var body []byte
		if req.Body != nil && req.Body != http.NoBody {
			b, err := io.ReadAll(req.Body)
			_ = req.Body.Close()
			if err != nil {
				return nil, err
			}
			body = b
			req.Body = io.NopCloser(bytes.NewReader(b))
		}
		call := recordedCall{Method: req.Method, URL: req.URL.String(), Auth: req.Header.Get("Authorization"),
			ContentType: req.Header.Get("Content-Type"), Body: body}
		r.mu.Lock()
		if r.encErr == nil {
			r.encErr = r.enc.Encode(&call)
			r.count++
		}
		r.mu.Unlock()
	}
	return r.base.RoundTrip(req)
}

// Start and Stop switch recording on and off.
func (r *callRecorder) Start() { r.mu.Lock(); r.on = true; r.mu.Unlock() }
func (r *callRecorder) Stop()  { r.mu.Lock(); r.on = false; r.mu.Unlock() }

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
	dec := gob.NewDecoder(bufio.NewReaderSize(f, 1<<20))

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
		var c recordedCall
		if err := dec.Decode(&c); err != nil {
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
