// Package metricstest reads a Prometheus /metrics endpoint the way tests
// assert on it, for the tests of pkg/metrics and of its users.
package metricstest

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Scrape fetches /metrics over real HTTP and returns the body.
func Scrape(t testing.TB, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d: %s", res.StatusCode, body)
	}
	return string(body)
}

// Value returns the value of the first series whose name is name and whose
// labels include every want label, or -1 when none matches.
func Value(body, name string, want map[string]string) float64 {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `\{([^}]*)\} (\S+)$`)
	for _, line := range strings.Split(body, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ok := true
		for k, v := range want {
			if !strings.Contains(m[1], k+`="`+v+`"`) {
				ok = false
				break
			}
		}
		if ok {
			f, _ := strconv.ParseFloat(m[2], 64)
			return f
		}
	}
	return -1
}
