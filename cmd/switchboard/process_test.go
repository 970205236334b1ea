package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/internal/testbin"
	"github.com/switchboard-chat/switchboard/internal/testkit"
)

// TestMain removes a binary that internal/testbin built for this package.
func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// TestProcess runs the real binary: exit codes, JSON logs, --addr-file and
// a clean exit 0 on SIGTERM.
func TestProcess(t *testing.T) {
	bin := testbin.Binary(t)

	t.Run("exit codes", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			code int
			text string
		}{
			{[]string{"serve"}, 1, "generate-config"},
			{[]string{"frobnicate"}, 2, "unknown command"},
			{[]string{"serve", "--no-such-flag"}, 2, "no-such-flag"},
			{[]string{"serve", "-h"}, 0, "-media-port"},
			{[]string{"version"}, 0, "switchboard"},
		} {
			cmd := exec.Command(bin, tc.args...)
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(string(out), tc.text) {
				t.Errorf("%q: exit %d, output %q; want exit %d mentioning %q", tc.args, code, out, tc.code, tc.text)
			}
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		work := t.TempDir()
		addrFile := filepath.Join(work, "addrs.json")
		args := append([]string{"serve", "--dev", "--log-format", "json", "--addr-file", addrFile}, freePortArgs()...)
		cmd := exec.Command(bin, args...)
		cmd.Dir = work // --dev puts ./switchboard-data here
		var stderr syncBuffer
		cmd.Stderr = &stderr
		cmd.Stdout = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		waited := false
		defer func() {
			if !waited {
				_ = cmd.Process.Kill()
				<-exited
			}
		}()

		var addrs boundAddrs
		testkit.Eventually(t, 60*time.Second, "--addr-file", func() bool {
			select {
			case err := <-exited:
				waited = true
				t.Fatalf("switchboard exited early: %v\n%s", err, stderr.String())
			default:
			}
			data, err := os.ReadFile(addrFile)
			return err == nil && json.Unmarshal(data, &addrs) == nil
		})
		if addrs.Client == "" || addrs.Metrics == "" || addrs.TURNUDP == "" {
			t.Fatalf("addr file incomplete: %+v", addrs)
		}
		if _, err := os.Stat(filepath.Join(work, "switchboard-data", signingKeyName)); err != nil {
			t.Errorf("--dev did not use ./switchboard-data: %v", err)
		}
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + addrs.Client + "/health")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/health: %d", resp.StatusCode)
		}
		c.CloseIdleConnections()

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			waited = true
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("no exit within 30 s of SIGTERM\n%s", stderr.String())
		}
		if cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("exit code %d", cmd.ProcessState.ExitCode())
		}
		// Every log line is one JSON object; the last says it stopped.
		sc := bufio.NewScanner(strings.NewReader(stderr.String()))
		var last map[string]any
		for sc.Scan() {
			last = nil
			if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
				t.Errorf("log line is not JSON: %q", sc.Text())
			}
		}
		if last["msg"] != "stopped" {
			t.Errorf("last log line %v, want msg=stopped", last)
		}
	})
}
