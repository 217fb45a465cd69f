package genesys

import (
	"fmt"
	"sort"
	"strings"
)

// Region is a Genesys Cloud region: the domain its hosts live under and the
// AWS region it runs in. One API host serves every org of a region; the
// token decides which org a request acts on.
type Region struct {
	Domain    string // e.g. "mypurecloud.ie"
	AWSRegion string // e.g. "eu-west-1"
}

// LoginBaseURL is the OAuth host, e.g. https://login.mypurecloud.ie.
func (r Region) LoginBaseURL() string { return "https://login." + r.Domain }

// APIBaseURL is the Platform API host, e.g. https://api.mypurecloud.ie.
func (r Region) APIBaseURL() string { return "https://api." + r.Domain }

// regions lists the public Genesys Cloud regions (developer.genesys.cloud
// "Platform API" region table).
var regions = []Region{
	{"mypurecloud.com", "us-east-1"},
	{"usw2.pure.cloud", "us-west-2"},
	{"use2.us-gov-pure.cloud", "us-east-2"},
	{"cac1.pure.cloud", "ca-central-1"},
	{"mypurecloud.ie", "eu-west-1"},
	{"euw2.pure.cloud", "eu-west-2"},
	{"mypurecloud.de", "eu-central-1"},
	{"euc2.pure.cloud", "eu-central-2"},
	{"aps1.pure.cloud", "ap-south-1"},
	{"mypurecloud.jp", "ap-northeast-1"},
	{"apne2.pure.cloud", "ap-northeast-2"},
	{"apne3.pure.cloud", "ap-northeast-3"},
	{"mypurecloud.com.au", "ap-southeast-2"},
	{"sae1.pure.cloud", "sa-east-1"},
	{"mec1.pure.cloud", "me-central-1"},
}

// Regions returns every known region.
func Regions() []Region { return append([]Region(nil), regions...) }

// LookupRegion accepts a region's domain ("mypurecloud.ie", also with a
// "login." or "api." prefix) or its AWS name ("eu-west-1"), case-insensitively.
// An unknown name yields an error that lists the valid ones.
func LookupRegion(name string) (Region, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	n = strings.TrimPrefix(strings.TrimPrefix(n, "https://"), "http://")
	n = strings.TrimPrefix(strings.TrimPrefix(n, "login."), "api.")
	for _, r := range regions {
		if n == r.Domain || n == r.AWSRegion {
			return r, nil
		}
	}
	valid := make([]string, 0, 2*len(regions))
	for _, r := range regions {
		valid = append(valid, r.Domain, r.AWSRegion)
	}
	sort.Strings(valid)
	return Region{}, fmt.Errorf("genesys: unknown region %q; valid regions: %s", name, strings.Join(valid, ", "))
}
