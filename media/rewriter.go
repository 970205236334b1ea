package media

// Rewriter maps the packets of one or more successive source streams (for
// example the simulcast layers of one track, RFC 8853) onto one continuous
// output stream: sequence numbers follow on without a gap at a switch and
// timestamps keep increasing (RFC 3550 section 5.1), so the receiver sees a
// single SSRC. For VP8 it also keeps the picture ID and TL0PICIDX
// continuous (RFC 7741 section 4.2).
//
// It is not safe for concurrent use: one goroutine drives one output.
type Rewriter struct {
	clockRate uint32

	started   bool
	switching bool // next packet rebases the offsets

	switchSeq uint16 // first source sequence number of the current source
	highSrc   uint16 // highest source sequence number of the current source
	seqOffset uint16
	tsOffset  uint32

	lastSeq uint16 // highest output sequence number so far
	lastTS  uint32 // highest output timestamp so far
	lastAt  int64  // when lastTS was sent, unix nanoseconds

	picStarted bool
	picSwitch  bool
	picOffset  uint16
	tl0Offset  uint8
	lastPic    uint16
	lastTL0    uint8
}

// maxSeqJump is the largest gap in source sequence numbers still taken as
// loss or reordering; a larger one is a restart of the source's numbering.
const maxSeqJump = 3000

// NewRewriter returns a Rewriter for a stream whose RTP clock runs at
// clockRate Hz (90000 for video, 48000 for Opus).
func NewRewriter(clockRate uint32) *Rewriter {
	if clockRate == 0 {
		clockRate = 90000
	}
	return &Rewriter{clockRate: clockRate, switching: true}
}

// Switch makes the next packet passed to Rewrite the first of a new source;
// call it when changing layers or resuming after a pause, just before the
// key frame that starts the new source.
func (r *Rewriter) Switch() {
	r.switching = true
	r.picSwitch = true
}

// Rewrite returns the output sequence number and timestamp of a source
// packet sent at now (unix nanoseconds). It reports false for a packet older
// than the current source's first packet, which must be dropped.
func (r *Rewriter) Rewrite(seq uint16, ts uint32, now int64) (uint16, uint32, bool) {
	if !r.switching {
		if jump := int16(seq - r.highSrc); jump > maxSeqJump || jump < -maxSeqJump {
			// The source restarted its numbering: continue the output
			// from here as after a switch.
			r.switching = true
		} else if int16(seq-r.switchSeq) < 0 {
			return 0, 0, false
		}
	}
	if r.switching {
		r.switching = false
		if r.started {
			r.seqOffset = r.lastSeq + 1 - seq
			ticks := uint32(1)
			if el := now - r.lastAt; el > 0 {
				if t := uint64(el) * uint64(r.clockRate) / 1e9; t > 1 {
					ticks = uint32(t)
				}
			}
			r.tsOffset = r.lastTS + ticks - ts
		} else {
			r.started = true
			r.lastSeq = seq - 1
			r.lastTS = ts
		}
		r.switchSeq = seq
		r.highSrc = seq
	}
	if int16(seq-r.highSrc) > 0 {
		r.highSrc = seq
	}
	outSeq := seq + r.seqOffset
	outTS := ts + r.tsOffset
	if int16(outSeq-r.lastSeq) > 0 {
		r.lastSeq = outSeq
	}
	if int32(outTS-r.lastTS) > 0 || r.lastAt == 0 {
		r.lastTS = outTS
		r.lastAt = now
	}
	return outSeq, outTS, true
}

// RewriteVP8 returns the output picture ID (15-bit space) and TL0PICIDX for
// a VP8 packet of the current source. Call it after Rewrite accepted the
// packet.
func (r *Rewriter) RewriteVP8(d *VP8Descriptor) (uint16, uint8) {
	pic := d.PictureID
	if !d.PictureIDWide {
		pic &= 0x7f
	}
	if r.picSwitch || !r.picStarted {
		r.picSwitch = false
		if r.picStarted {
			r.picOffset = r.lastPic + 1 - pic
			r.tl0Offset = r.lastTL0 + 1 - d.TL0PICIDX
		} else {
			r.picStarted = true
			r.lastPic = pic
			r.lastTL0 = d.TL0PICIDX
		}
	}
	outPic := (pic + r.picOffset) & 0x7fff
	outTL0 := d.TL0PICIDX + r.tl0Offset
	if diff := (outPic - r.lastPic) & 0x7fff; diff != 0 && diff < 0x4000 {
		r.lastPic = outPic
	}
	if int8(outTL0-r.lastTL0) > 0 {
		r.lastTL0 = outTL0
	}
	return outPic, outTL0
}

// LastSequenceNumber returns the highest output sequence number written.
func (r *Rewriter) LastSequenceNumber() uint16 { return r.lastSeq }
