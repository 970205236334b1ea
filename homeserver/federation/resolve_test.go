package federation

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
)

// TestResolveServerOrder checks the spec's resolution order with
// injected well-known and SRV lookups (no DNS).
func TestResolveServerOrder(t *testing.T) {
	wk := map[string]string{
		"delegated.example":  "matrix.example:1234",
		"delegsrv.example":   "fed.example",
		"delegip.example":    "[2001:db8::1]",
		"delegplain.example": "plain.example",
	}
	srv := map[string][]*net.SRV{
		"_matrix-fed._tcp.fed.example": {{Target: "b.fed.example.", Port: 8000, Priority: 20}, {Target: "a.fed.example.", Port: 9000, Priority: 10}},
		"_matrix-fed._tcp.srv.example": {{Target: "host.srv.example.", Port: 8443}},
		"_matrix._tcp.old.example":     {{Target: "legacy.example.", Port: 8888}},
		// Ignored: the name has an explicit port.
		"_matrix-fed._tcp.port.example": {{Target: "wrong.example.", Port: 1}},
	}
	r := &serverResolver{
		wellKnown: func(_ context.Context, host string) (string, error) {
			if d, ok := wk[host]; ok {
				return d, nil
			}
			return "", errors.New("no well-known")
		},
		lookupSRV: func(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
			if recs, ok := srv["_"+service+"._"+proto+"."+name]; ok {
				return "", recs, nil
			}
			return "", nil, errors.New("no SRV")
		},
	}
	for _, tc := range []struct {
		name string
		want []resolvedServer
	}{
		{"1.2.3.4", []resolvedServer{{"1.2.3.4:8448", "1.2.3.4", ""}}},
		{"1.2.3.4:99", []resolvedServer{{"1.2.3.4:99", "1.2.3.4:99", ""}}},
		{"[::1]:99", []resolvedServer{{"[::1]:99", "[::1]:99", ""}}},
		{"port.example:4443", []resolvedServer{{"port.example:4443", "port.example:4443", "port.example"}}},
		{"delegated.example", []resolvedServer{{"matrix.example:1234", "matrix.example:1234", "matrix.example"}}},
		{"delegip.example", []resolvedServer{{"[2001:db8::1]:8448", "[2001:db8::1]", ""}}},
		{"delegsrv.example", []resolvedServer{{"a.fed.example:9000", "fed.example", "fed.example"}, {"b.fed.example:8000", "fed.example", "fed.example"}}},
		{"delegplain.example", []resolvedServer{{"plain.example:8448", "plain.example", "plain.example"}}},
		{"srv.example", []resolvedServer{{"host.srv.example:8443", "srv.example", "srv.example"}}},
		{"old.example", []resolvedServer{{"legacy.example:8888", "old.example", "old.example"}}},
		{"plain.example", []resolvedServer{{"plain.example:8448", "plain.example", "plain.example"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := r.resolve(context.Background(), tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"", "a/b", "host:0", "host:70000", "[::1", "[zz]:1", "@x"} {
		if _, err := r.resolve(context.Background(), bad); err == nil {
			t.Errorf("%q resolved", bad)
		}
	}
}

func TestAddrPolicy(t *testing.T) {
	p, err := NewAddrPolicy([]string{"127.0.0.1/32", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:1": true, "10.1.2.3:1": true, "127.0.0.2:1": false, "10.0.0.1:1": false,
		"192.168.1.1:1": false, "[::1]:1": false, "[fe80::1]:1": false, "100.64.0.1:1": false,
		"0.0.0.0:1": false, "[::ffff:127.0.0.2]:1": false, "8.8.8.8:443": true, "[2001:4860::1]:443": true,
	} {
		if got := p.Control("tcp", addr, nil) == nil; got != want {
			t.Errorf("%s: permitted %v, want %v", addr, got, want)
		}
	}
	if _, err := NewAddrPolicy([]string{"not-a-cidr"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("bad allow-list entry: %v", err)
	}
}

func FuzzSplitServerName(f *testing.F) {
	for _, s := range []string{"example.org", "example.org:8448", "1.2.3.4", "[::1]:80", "[::1", "a:b:c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := splitServerName(s)
		if err != nil {
			return
		}
		if host == "" || port < 0 || port > 65535 {
			t.Fatalf("%q -> %q %d", s, host, port)
		}
	})
}

func FuzzParseWellKnownServer(f *testing.F) {
	for _, s := range []string{`{"m.server":"example.org:443"}`, `{"m.server":""}`, `{}`, `[]`, `{"m.server":"[::1]:8"}`, `{"m.server":5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseWellKnownServer(b)
		if err != nil {
			return
		}
		if _, _, err := splitServerName(s); err != nil {
			t.Fatalf("accepted an invalid server name %q", s)
		}
	})
}
