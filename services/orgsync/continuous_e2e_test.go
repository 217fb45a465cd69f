package orgsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/orgsync/orgsync/pkg/genesys"
	"github.com/orgsync/orgsync/pkg/natsx"
	"github.com/orgsync/orgsync/pkg/natsx/natsxtest"
	orgsyncv1 "github.com/orgsync/orgsync/proto/orgsync/v1"
	"github.com/orgsync/orgsync/services/gcsim"
)

// TestSourceChangeConvergesFromRealNotification is continuous sync as an
// administrator sees it: after a clone, the title of the reference user is
// changed in the source org through the Genesys API, and the targets follow
// from the audit notification alone — no periodic sweep, no start-up sweep.
// A second channel of the test watches the same topic, so the test also
// proves the notification has the real platform's shape (the SDK's
// AuditTopicAuditLogMessage) and that it is the one the pipeline acted on.
func TestSourceChangeConvergesFromRealNotification(t *testing.T) {
	t.Parallel()
	const email = "john.smith@acme.example"
	targets := []string{"target1", "target2"}
	h := startHarnessConfig(t, DevConfig{Sim: e2eSim(), ServiceArgs: map[string][]string{"reconciler": {"--sweep-interval=-1s"}}})
	if rep, _ := h.clone(CloneSpec{SourceOrg: "source", Users: []string{email}, Targets: targets, RequestedBy: t.Name()}); rep.Status != ReportSucceeded {
		t.Fatalf("clone: %s", rep.Status)
	}
	srcOrg := h.orgID("source")
	john, ok := h.dev.Sim.UserByEmail(srcOrg, email)
	if !ok {
		t.Fatal("john is not in the source org")
	}
	topic := gcsim.UserAuditTopic(john.ID)
	natsxtest.Eventually(t, 30*time.Second, "the reconciler's socket subscribed to john's audit topic", func() bool {
		return h.dev.Sim.SocketsSubscribed(srcOrg, topic) == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := h.direct.Client("source")
	if err != nil {
		t.Fatal(err)
	}
	watch := watchTopic(ctx, t, src, topic)
	natsxtest.Eventually(t, 10*time.Second, "the test's socket subscribed too", func() bool {
		return h.dev.Sim.SocketsSubscribed(srcOrg, topic) == 2
	})

	title := "Head of Escalations"
	if _, err := src.PatchUser(ctx, john.ID, genesys.UserPatch{Title: &title}); err != nil {
		t.Fatalf("change john's title at the source: %v", err)
	}
	audit := readAudit(ctx, t, watch)
	if audit.EntityType != "User" || audit.Entity.ID != john.ID || audit.Action != "Update" || audit.ServiceName != "Directory" ||
		fmt.Sprint(audit.PropertyChanges) != fmt.Sprintf("[{title [%s] [%s]}]", john.Title, title) {
		t.Fatalf("audit notification: %+v", audit)
	}

	for _, tg := range targets {
		natsxtest.Eventually(t, 30*time.Second, tg+" follows the new title", func() bool {
			u, ok := h.dev.Sim.UserByEmail(h.orgID(tg), email)
			return ok && u.Title == title
		})
	}
	// The pipeline acted on that notification: one ChangeEvent, keyed by
	// the audit id, dated by its eventTime; nothing came from a sweep.
	changes := changeEvents(ctx, t, h, "source")
	if len(changes) != 1 {
		t.Fatalf("CHANGES holds %d events for the source, want the notification's alone: %v", len(changes), changes)
	}
	ev := changes[0]
	eventTime, _ := time.Parse(time.RFC3339Nano, audit.EventTime)
	if ev.GetSource() != orgsyncv1.ChangeSource_CHANGE_SOURCE_NOTIFICATION || ev.GetEventId() != audit.ID || ev.GetUserId() != john.ID ||
		!ev.GetOccurredAt().AsTime().Equal(eventTime) {
		t.Fatalf("change event %v, want the notification of audit %s at %s", ev, audit.ID, audit.EventTime)
	}
}

// watchTopic opens a notification channel of c subscribed to topic and
// returns its socket.
func watchTopic(ctx context.Context, t *testing.T, c *genesys.Client, topic string) *websocket.Conn {
	t.Helper()
	ch, err := c.CreateChannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReplaceSubscriptions(ctx, ch.ID, []string{topic}); err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.Dial(ctx, ch.ConnectURI, nil)
	if err != nil {
		t.Fatalf("connect channel %s: %v", ch.ID, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// auditMessage is the official SDK's AuditTopicAuditLogMessage
// (purecloud-platform-client-v2 262.0.0) as far as this test reads it;
// decoding disallows the properties the model does not declare.
type auditMessage struct {
	ID            string   `json:"id"`
	UserID        string   `json:"userId"`
	UserHomeOrgID string   `json:"userHomeOrgId"`
	Username      any      `json:"username"`
	UserDisplay   string   `json:"userDisplay"`
	ClientID      any      `json:"clientId"`
	RemoteIP      []string `json:"remoteIp"`
	ServiceName   string   `json:"serviceName"`
	Level         string   `json:"level"`
	EventTime     string   `json:"eventTime"`
	Message       any      `json:"message"`
	Action        string   `json:"action"`
	EntityType    string   `json:"entityType"`
	Entity        struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		SelfURI string `json:"selfUri"`
	} `json:"entity"`
	PropertyChanges []struct {
		Property  string   `json:"property"`
		OldValues []string `json:"oldValues"`
		NewValues []string `json:"newValues"`
	} `json:"propertyChanges"`
	Context map[string]string `json:"context"`
}

// readAudit reads ws until an audit notification, skipping heartbeats.
func readAudit(ctx context.Context, t *testing.T, ws *websocket.Conn) auditMessage {
	t.Helper()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read the test's socket: %v", err)
		}
		var msg struct {
			TopicName string          `json:"topicName"`
			EventBody json.RawMessage `json:"eventBody"`
		}
		if err := json.Unmarshal(data, &msg); err != nil {
			t.Fatalf("notification %s: %v", data, err)
		}
		if msg.TopicName == "channel.metadata" {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(string(msg.EventBody)))
		dec.DisallowUnknownFields()
		var m auditMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("eventBody %s is not an AuditTopicAuditLogMessage: %v", msg.EventBody, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, m.EventTime); err != nil {
			t.Fatalf("eventTime %q: %v", m.EventTime, err)
		}
		return m
	}
}

// changeEvents reads every ChangeEvent of src stored in CHANGES.
func changeEvents(ctx context.Context, t *testing.T, h *harness, src string) []*orgsyncv1.ChangeEvent {
	t.Helper()
	st, err := h.client.JS.Stream(ctx, natsx.StreamChanges)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := natsx.ChangeSubject(src)
	var out []*orgsyncv1.ChangeEvent
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != subj {
			continue
		}
		ev := &orgsyncv1.ChangeEvent{}
		if err := proto.Unmarshal(m.Data, ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}
