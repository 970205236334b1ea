package sync

import (
	"errors"
	"testing"
)

// TestTokenWireFormat: while the storage streams stand together a token
// is the short form clients have always held; old short tokens read with
// every storage stream at their first field; a token whose storage
// streams differ writes every slot and reads back the same.
func TestTokenWireFormat(t *testing.T) {
	var tok Token
	for _, id := range []StreamID{StreamRooms, StreamAccountData, StreamReceipts, StreamDeviceLists, StreamUnread} {
		tok.Set(id, 42)
	}
	tok.Set(StreamTyping, 3)
	tok.Set(StreamToDevice, 40)
	tok.Set(StreamPresence, 7)
	if got := tok.String(); got != "s42_3_40_7" {
		t.Fatalf("short form %q, want s42_3_40_7", got)
	}
	old, err := ParseToken("s42_3")
	if err != nil {
		t.Fatal(err)
	}
	if old.Get(StreamReceipts) != 42 || old.Get(StreamUnread) != 42 || old.Get(StreamTyping) != 3 || old.Get(StreamToDevice) != 0 {
		t.Fatalf("old token read as %+v", old)
	}
	tok.Set(StreamReceipts, 41)
	long := tok.String()
	if long != "s42_3_40_7_42_41_42_42" {
		t.Fatalf("long form %q", long)
	}
	back, err := ParseToken(long)
	if err != nil || back != tok {
		t.Fatalf("round trip %q -> %+v, %v", long, back, err)
	}
	for _, bad := range []string{"", "t5", "s", "s1_2_3_4_5", "s-1", "s1_x", "s1_2_3_4_5_6_7_8_9", "s9223372036854775808"} {
		if _, err := ParseToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) = %v, want ErrBadToken", bad, err)
		}
	}
}

// FuzzParseToken: any accepted token has non-negative positions and
// survives a round trip through String.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"s0", "s12_3_4", "s1_2", "s-1", "s9223372036854775807_0_0", "t5", "", "s__", "s1_2_3_4",
		"s1_2_3_4_5_6_7_8", "s1_2_3_4_1_1_1_2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			return
		}
		for id := StreamID(0); id < numStreams; id++ {
			if tok.Get(id) < 0 {
				t.Fatalf("%q parsed to a negative position %+v", s, tok)
			}
		}
		again, err := ParseToken(tok.String())
		if err != nil || again != tok {
			t.Fatalf("%q: round trip %+v -> %q -> %+v, %v", s, tok, tok.String(), again, err)
		}
	})
}
