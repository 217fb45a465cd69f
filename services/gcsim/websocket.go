package gcsim

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// closeMode says why the simulator ends a socket, which decides how.
type closeMode int

const (
	closeDropped  closeMode = iota + 1 // DropWebSockets: abrupt, no close frame
	closeExpired                       // channel expired: socket_closing message, then 1001
	closeEvicted                       // channel evicted by the 21st (EvictOldestChannel): 1001
	closeReplaced                      // a newer socket connected to the channel: 1008
	closeShutdown                      // Sim.Close: 1001
)

// Messages of the "channel.metadata" and system topics.
var (
	heartbeatMessage = mustJSON(map[string]any{"topicName": "channel.metadata", "eventBody": map[string]any{"message": "WebSocket Heartbeat"}})
	pongMessage      = mustJSON(map[string]any{"topicName": "channel.metadata", "eventBody": map[string]any{"message": "pong"}})
	closingMessage   = mustJSON(map[string]any{"topicName": "v2.system.socket_closing", "eventBody": map[string]any{"message": "The channel has expired; the socket is closing. Create a new channel."}})
)

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// sendQueue bounds the messages waiting for a slow socket; beyond it
// messages are dropped, as for a consumer that does not keep up.
const sendQueue = 256

type outMsg struct {
	data         []byte
	notification bool // counted in Stats.NotificationsDelivered once written
}

// wsConn is the server side of one channel socket. It is registered on its
// channel before the upgrade completes, so messages raised while the client
// finishes its handshake are queued, not lost.
type wsConn struct {
	send chan outMsg
	quit chan struct{}
	once sync.Once
	mode closeMode // set once, before quit is closed
}

func newWSConn() *wsConn {
	return &wsConn{send: make(chan outMsg, sendQueue), quit: make(chan struct{})}
}

// enqueue queues a message without blocking; a full queue drops it.
func (w *wsConn) enqueue(b []byte, notification bool) {
	select {
	case w.send <- outMsg{b, notification}:
	default:
	}
}

// shutdown asks the writer to end the socket in mode m (first call wins).
func (w *wsConn) shutdown(m closeMode) {
	w.once.Do(func() {
		w.mode = m
		close(w.quit)
	})
}

// serveChannelSocket serves GET /channels/{channelId}, the connectUri of a
// channel: no authentication (the channel id is the credential, as on the
// platform), 404 before the upgrade for unknown or expired channels. A new
// socket on a channel replaces the previous one (closed with 1008).
// Clients may send {"message":"ping"} and get a channel.metadata "pong".
func (s *Sim) serveChannelSocket(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("channelId")
	n := s.notif
	n.mu.Lock()
	n.sweepLocked(s.now())
	c := n.channels[id]
	if n.closed || c == nil {
		n.mu.Unlock()
		writeError(w, r, notFound("notification channel %s not found (it may have expired)", id))
		return
	}
	conn := newWSConn()
	if c.conn != nil {
		c.conn.shutdown(closeReplaced)
	}
	c.conn, c.lastUsed = conn, s.now()
	orgID := c.orgID
	n.mu.Unlock()
	detach := func() {
		n.mu.Lock()
		if c.conn == conn {
			c.conn = nil
		}
		n.mu.Unlock()
	}
	defer detach()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the failed upgrade
	}
	defer ws.CloseNow()
	ws.SetReadLimit(64 << 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			_, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			var m struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(data, &m) == nil && m.Message == "ping" {
				conn.enqueue(pongMessage, false)
			}
		}
	}()

	var tick <-chan time.Time
	if s.cfg.NotificationHeartbeat > 0 {
		t := time.NewTicker(s.cfg.NotificationHeartbeat)
		defer t.Stop()
		tick = t.C
	}
	write := func(b []byte) bool {
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		return ws.Write(wctx, websocket.MessageText, b) == nil
	}
	for {
		select {
		case m := <-conn.send:
			if !write(m.data) {
				return
			}
			if m.notification {
				s.recordNotification(orgID)
			}
		case <-tick:
			// The tick is also when an idle socket notices its channel
			// expired (the sweep shuts conn down; quit is handled next).
			n.mu.Lock()
			n.sweepLocked(s.now())
			n.mu.Unlock()
			select {
			case <-conn.quit:
				continue
			default:
			}
			if !write(heartbeatMessage) {
				return
			}
		case <-conn.quit:
			switch conn.mode {
			case closeDropped:
				return // deferred CloseNow: no close frame
			case closeExpired:
				write(closingMessage)
				_ = ws.Close(websocket.StatusGoingAway, "channel expired")
			case closeEvicted:
				_ = ws.Close(websocket.StatusGoingAway, "channel removed: channel limit of the OAuth client reached")
			case closeReplaced:
				_ = ws.Close(websocket.StatusPolicyViolation, "replaced by a newer connection to this channel")
			default:
				_ = ws.Close(websocket.StatusGoingAway, "server shutting down")
			}
			return
		case <-readerDone:
			return
		}
	}
}
