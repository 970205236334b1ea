package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestDiskFullAnswers503AndRecovers runs the server with its data
// directory (the SQLite database) on a small tmpfs of its own, fills that
// disk, and checks what an operator needs: writes answer 503 with
// Retry-After (not a 500, no acknowledgement of a write that was not
// kept), reads go on, the process stays up, and once space is freed
// writes succeed again without a restart, with every acknowledged event
// there.
//
// The tmpfs is mounted in a mount namespace of the server's own (unshare;
// as a user namespace's root when the test is not root), so the test
// needs no privilege; it reaches the disk through /proc/<pid>/root.
func TestDiskFullAnswers503AndRecovers(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatalf("unshare (util-linux) is needed for the disk-full test: %v", err)
	}
	dataDir := t.TempDir()
	wrap := []string{"unshare", "--mount", "--propagation", "private"}
	if os.Geteuid() != 0 {
		wrap = append(wrap, "--map-root-user")
	}
	// sh mounts the tmpfs over the data directory, then becomes the server.
	wrap = append(wrap, "sh", "-c", `mount -t tmpfs -o size=24m,mode=0700 tmpfs "$0" && exec "$@"`, dataDir)
	log := &LockedBuffer{}
	p, err := Start(context.Background(), Options{
		Bin: binary(t), DataDir: dataDir, Wrap: wrap, Log: log,
		Args: []string{"--log-format", "json", "--rate-limit=false"},
	})
	if err != nil {
		t.Fatalf("%v\nserver log:\n%s", err, tail(log.String(), 4000))
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("server log:\n%s", tail(log.String(), 8000))
		}
	})
	// The server's view of its data directory: the tmpfs.
	disk := filepath.Join("/proc", strconv.Itoa(p.Pid()), "root", dataDir)
	var st syscall.Statfs_t
	if err := syscall.Statfs(disk, &st); err != nil {
		t.Fatalf("statfs of the server's data directory: %v", err)
	}
	if st.Type != 0x01021994 { // TMPFS_MAGIC, statfs(2)
		t.Fatalf("the server's data directory is not on its tmpfs (statfs type %#x)", st.Type)
	}

	cli := newClient(t, p.ClientURL())
	register(t, cli, "alice", "correct horse battery")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	room, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Name: "disk full"})
	if err != nil {
		t.Fatalf("createRoom: %v", err)
	}
	acked := map[id.EventID]string{}
	send := func(txn string) (id.EventID, error) {
		resp, err := cli.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
			&event.MessageEventContent{MsgType: event.MsgText, Body: txn + " " + strings.Repeat("x", 2000)},
			mautrix.ReqSendEvent{TransactionID: txn})
		if err != nil {
			return "", err
		}
		acked[resp.EventID] = txn
		return resp.EventID, nil
	}
	for i := range 20 {
		if _, err := send(fmt.Sprintf("before%d", i)); err != nil {
			t.Fatalf("send before the disk filled: %v", err)
		}
	}

	// Fill the disk to the last byte.
	filler := filepath.Join(disk, "filler")
	fillDisk(t, filler)

	// Sends go on while the database finds room in pages and journal space
	// it already holds; the first one that cannot be kept must be a 503
	// with Retry-After, and so must the ones after it.
	var refused int
	for i := 0; refused < 5; i++ {
		if i == 5000 {
			t.Fatalf("5000 sends on a full disk were all acknowledged")
		}
		_, err := send(fmt.Sprintf("full%d", i))
		if err == nil {
			continue
		}
		var herr mautrix.HTTPError
		if !errors.As(err, &herr) || herr.Response == nil {
			t.Fatalf("send on a full disk: %v (want an HTTP answer)", err)
		}
		if herr.Response.StatusCode != http.StatusServiceUnavailable || herr.Response.Header.Get("Retry-After") == "" {
			t.Fatalf("send on a full disk: %d Retry-After %q: %v; want 503 with Retry-After",
				herr.Response.StatusCode, herr.Response.Header.Get("Retry-After"), err)
		}
		refused++
	}
	// Reads still work, and the process is still up.
	if _, err := cli.Messages(ctx, room.RoomID, "", "", mautrix.DirectionBackward, nil, 5); err != nil {
		t.Fatalf("read on a full disk: %v", err)
	}
	select {
	case <-p.Done():
		t.Fatal("the server exited on a full disk")
	default:
	}

	// Free the space: writes succeed again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		_, err := send(fmt.Sprintf("after%d", i))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no send succeeded within 60 s of freeing the disk: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Every acknowledged event is there, with its content.
	found := map[id.EventID]string{}
	from := ""
	for {
		resp, err := cli.Messages(ctx, room.RoomID, from, "", mautrix.DirectionBackward, nil, 1000)
		if err != nil {
			t.Fatalf("/messages: %v", err)
		}
		for _, ev := range resp.Chunk {
			if ev.Type == event.EventMessage {
				body, _ := ev.Content.Raw["body"].(string)
				found[ev.ID], _, _ = strings.Cut(body, " ")
			}
		}
		if resp.End == "" || len(resp.Chunk) == 0 {
			break
		}
		from = resp.End
	}
	for evID, txn := range acked {
		if found[evID] != txn {
			t.Errorf("acknowledged event %s (%s) is missing or changed after the disk filled: %q", evID, txn, found[evID])
		}
	}
	// And nothing refused was kept: a 503 changed nothing.
	if len(found) != len(acked) {
		t.Errorf("%d messages in the room, %d acknowledged: a refused send was kept", len(found), len(acked))
	}
	t.Logf("%d events acknowledged, %d refused with 503 on the full disk, all acknowledged ones kept", len(acked), refused)
}

// fillDisk writes path until the file system is full (ENOSPC).
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatalf("filling the disk: %v", err)
		}
	}
	// The last bytes: a tmpfs gives out pages, so fill to the byte.
	one := buf[:1]
	for {
		if _, err := f.Write(one); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("filling the disk: %v", err)
		}
	}
}
