package e2e

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseProcStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		stat string
		want float64
		err  bool
	}{
		{
			name: "plain",
			stat: "2100 (switchboard) S 1 2100 2100 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 1000 1 2 3",
			want: 3.25,
		},
		{
			name: "command with spaces and parentheses",
			stat: "7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7",
			want: 0.03,
		},
		{name: "no parenthesis", stat: "7 a R 1 2 3", err: true},
		{name: "too short", stat: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 1", err: true},
		{name: "not a number", stat: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 x 2 0", err: true},
		{name: "negative", stat: "7 (a) R 1 7 7 0 -1 0 0 0 0 0 -1 2 0", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcStatCPU([]byte(tc.stat))
			if tc.err {
				if !errors.Is(err, ErrProcStat) {
					t.Fatalf("got %v, %v; want ErrProcStat", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	// And this very process's own line.
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := ParseProcStatCPU(data); err != nil || v < 0 {
		t.Fatalf("/proc/self/stat: %v, %v", v, err)
	}
}

func FuzzParseProcStatCPU(f *testing.F) {
	f.Add([]byte("2100 (switchboard) S 1 2100 2100 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0"))
	f.Add([]byte("7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 6 7"))
	f.Add([]byte(")"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := ParseProcStatCPU(data)
		if err == nil && (v < 0 || v != v) {
			t.Fatalf("ParseProcStatCPU(%q) = %v without error", data, v)
		}
		if err != nil && !errors.Is(err, ErrProcStat) {
			t.Fatalf("error not wrapping ErrProcStat: %v", err)
		}
	})
}

func FuzzFindMetric(f *testing.F) {
	f.Add("# HELP x y\n# TYPE x counter\nswitchboard_homeserver_sync_requests_total 3\n")
	f.Add("switchboard_homeserver_sync_requests_total NaN\n")
	f.Add("switchboard_homeserver_sync_requests_total\n")
	f.Fuzz(func(t *testing.T, text string) {
		_, _ = findMetric(bufio.NewScanner(strings.NewReader(text)), syncMetric)
	})
}
