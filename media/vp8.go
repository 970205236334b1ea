package media

// VP8Descriptor is the parsed VP8 payload descriptor of one RTP packet
// (RFC 7741 section 4.2), plus what the VP8 payload header (section 4.3) and
// key frame header (RFC 6386 section 9.1) tell about the frame.
//
//	 0 1 2 3 4 5 6 7
//	+-+-+-+-+-+-+-+-+
//	|X|R|N|S|R| PID | (REQUIRED)
//	+-+-+-+-+-+-+-+-+
//	|I|L|T|K| RSV   | X: (OPTIONAL)
//	+-+-+-+-+-+-+-+-+
//	|M| PictureID   | I: (OPTIONAL, 7 or 15 bits)
//	+-+-+-+-+-+-+-+-+
//	|   TL0PICIDX   | L: (OPTIONAL)
//	+-+-+-+-+-+-+-+-+
//	|TID|Y| KEYIDX  | T/K: (OPTIONAL)
//	+-+-+-+-+-+-+-+-+
type VP8Descriptor struct {
	// Size is the length of the descriptor in bytes; the VP8 payload
	// starts there.
	Size int
	// NonReference is the N bit: the frame can be discarded.
	NonReference bool
	// Start is the S bit: this packet starts a VP8 partition.
	Start bool
	// PartitionID is the PID field.
	PartitionID uint8

	// HasPictureID tells whether PictureID is present; PictureIDWide
	// whether it is the 15-bit form (M bit).
	HasPictureID  bool
	PictureIDWide bool
	PictureID     uint16

	HasTL0PICIDX bool
	TL0PICIDX    uint8

	HasTID    bool
	TID       uint8
	LayerSync bool

	HasKeyIdx bool
	KeyIdx    uint8

	// Keyframe is set on the first packet of a key frame (S=1, PID=0 and
	// the P bit of the payload header clear).
	Keyframe bool
	// Width and Height are the frame size from the key frame header, when
	// this packet carries it (zero otherwise).
	Width, Height uint16

	picIDOffset int // offset of the picture ID in the payload, 0 if absent
	tl0Offset   int // offset of TL0PICIDX in the payload, 0 if absent
}

// ParseVP8 parses the VP8 payload descriptor at the start of an RTP
// payload. It never reads past the payload and never allocates.
func ParseVP8(payload []byte, d *VP8Descriptor) error {
	*d = VP8Descriptor{}
	if len(payload) < 1 {
		return ErrShortPacket
	}
	b := payload[0]
	d.NonReference = b&0x20 != 0
	d.Start = b&0x10 != 0
	d.PartitionID = b & 0x0f
	i := 1
	if b&0x80 != 0 { // X: extension byte present
		if len(payload) <= i {
			return ErrShortPacket
		}
		x := payload[i]
		i++
		if x&0x80 != 0 { // I: picture ID
			if len(payload) <= i {
				return ErrShortPacket
			}
			d.HasPictureID = true
			d.picIDOffset = i
			if payload[i]&0x80 != 0 {
				if len(payload) <= i+1 {
					return ErrShortPacket
				}
				d.PictureIDWide = true
				d.PictureID = uint16(payload[i]&0x7f)<<8 | uint16(payload[i+1])
				i += 2
			} else {
				d.PictureID = uint16(payload[i])
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			if len(payload) <= i {
				return ErrShortPacket
			}
			d.HasTL0PICIDX = true
			d.tl0Offset = i
			d.TL0PICIDX = payload[i]
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX byte
			if len(payload) <= i {
				return ErrShortPacket
			}
			if x&0x20 != 0 {
				d.HasTID = true
				d.TID = payload[i] >> 6
				d.LayerSync = payload[i]&0x20 != 0
			}
			if x&0x10 != 0 {
				d.HasKeyIdx = true
				d.KeyIdx = payload[i] & 0x1f
			}
			i++
		}
	}
	d.Size = i
	if d.Start && d.PartitionID == 0 && len(payload) > i {
		// VP8 payload header, RFC 7741 section 4.3: P (bit 0) is 0 for key
		// frames. A key frame's 10-byte header carries the start code
		// 9d 01 2a and the 14-bit width and height (RFC 6386 section 9.1).
		if payload[i]&0x01 == 0 {
			d.Keyframe = true
			h := payload[i:]
			if len(h) >= 10 && h[3] == 0x9d && h[4] == 0x01 && h[5] == 0x2a {
				d.Width = (uint16(h[6]) | uint16(h[7])<<8) & 0x3fff
				d.Height = (uint16(h[8]) | uint16(h[9])<<8) & 0x3fff
			}
		}
	}
	return nil
}

// RewriteVP8 overwrites the picture ID and TL0PICIDX of a payload parsed
// into d, in place. Fields absent from the descriptor are left alone; a
// 7-bit picture ID keeps its width and takes pictureID modulo 128.
func RewriteVP8(payload []byte, d *VP8Descriptor, pictureID uint16, tl0 uint8) {
	if d.HasPictureID && d.picIDOffset > 0 {
		if d.PictureIDWide {
			if d.picIDOffset+1 < len(payload) {
				payload[d.picIDOffset] = 0x80 | byte(pictureID>>8)&0x7f
				payload[d.picIDOffset+1] = byte(pictureID)
			}
		} else if d.picIDOffset < len(payload) {
			payload[d.picIDOffset] = byte(pictureID) & 0x7f
		}
	}
	if d.HasTL0PICIDX && d.tl0Offset > 0 && d.tl0Offset < len(payload) {
		payload[d.tl0Offset] = tl0
	}
}
