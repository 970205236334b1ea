package media

// bitReader reads an H.264 RBSP bit by bit, skipping emulation prevention
// bytes (ITU-T H.264 section 7.4.1: 0x000003 carries 0x0000). It never
// reads past its input: reads beyond the end set err.
type bitReader struct {
	b     []byte
	pos   int // byte position
	bit   uint
	zeros int // consecutive zero bytes read, for emulation prevention
	err   bool
}

func (r *bitReader) u1() uint32 {
	if r.bit == 0 {
		if r.zeros >= 2 && r.pos < len(r.b) && r.b[r.pos] == 3 {
			r.pos++
			r.zeros = 0
		}
		if r.pos >= len(r.b) {
			r.err = true
			return 0
		}
		if r.b[r.pos] == 0 {
			r.zeros++
		} else {
			r.zeros = 0
		}
	}
	v := uint32(r.b[r.pos]>>(7-r.bit)) & 1
	r.bit++
	if r.bit == 8 {
		r.bit = 0
		r.pos++
	}
	return v
}

func (r *bitReader) u(n int) uint32 {
	var v uint32
	for i := 0; i < n && !r.err; i++ {
		v = v<<1 | r.u1()
	}
	return v
}

// ue reads an unsigned Exp-Golomb code (section 9.1); values beyond 32
// bits are an error.
func (r *bitReader) ue() uint32 {
	zeros := 0
	for r.u1() == 0 && !r.err {
		zeros++
		if zeros > 31 {
			r.err = true
			return 0
		}
	}
	if r.err {
		return 0
	}
	return (1<<zeros - 1) + r.u(zeros)
}

func (r *bitReader) se() int32 {
	v := r.ue()
	if v&1 == 1 {
		return int32((v + 1) / 2)
	}
	return -int32(v / 2)
}

// H264SPSSize returns the picture size an H.264 sequence parameter set
// announces (ITU-T H.264 section 7.3.2.1.1, cropping applied per section
// 7.4.2.1.1). nal is the SPS NAL unit including its one-byte header.
func H264SPSSize(nal []byte) (width, height uint16, ok bool) {
	if len(nal) < 4 || nal[0]&0x1f != h264NALSPS {
		return 0, 0, false
	}
	r := &bitReader{b: nal[1:]}
	profile := r.u(8)
	r.u(16) // constraint flags, level_idc
	r.ue()  // seq_parameter_set_id
	chroma := uint32(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma > 3 {
			return 0, 0, false
		}
		if chroma == 3 {
			r.u(1) // separate_colour_plane_flag
		}
		r.ue()           // bit_depth_luma_minus8
		r.ue()           // bit_depth_chroma_minus8
		r.u(1)           // qpprime_y_zero_transform_bypass_flag
		if r.u(1) == 1 { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := 0; i < lists && !r.err; i++ {
				if r.u(1) == 0 {
					continue
				}
				size := 16
				if i >= 6 {
					size = 64
				}
				last, next := int32(8), int32(8)
				for j := 0; j < size && !r.err; j++ {
					if next != 0 {
						next = (last + r.se() + 256) % 256
					}
					if next != 0 {
						last = next
					}
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue() // log2_max_pic_order_cnt_lsb_minus4
	case 1:
		r.u(1) // delta_pic_order_always_zero_flag
		r.se() // offset_for_non_ref_pic
		r.se() // offset_for_top_to_bottom_field
		n := r.ue()
		if n > 255 {
			return 0, 0, false
		}
		for i := uint32(0); i < n && !r.err; i++ {
			r.se()
		}
	}
	r.ue() // max_num_ref_frames
	r.u(1) // gaps_in_frame_num_value_allowed_flag
	wMbs := r.ue() + 1
	hMaps := r.ue() + 1
	frameMbsOnly := r.u(1)
	if frameMbsOnly == 0 {
		r.u(1) // mb_adaptive_frame_field_flag
	}
	r.u(1) // direct_8x8_inference_flag
	var cl, cr, ct, cb uint32
	if r.u(1) == 1 { // frame_cropping_flag
		cl, cr, ct, cb = r.ue(), r.ue(), r.ue(), r.ue()
	}
	if r.err || wMbs > 1024 || hMaps > 1024 {
		return 0, 0, false
	}
	cropX, cropY := uint32(1), 2-frameMbsOnly
	switch chroma {
	case 1: // 4:2:0
		cropX, cropY = 2, 2*(2-frameMbsOnly)
	case 2: // 4:2:2
		cropX = 2
	}
	w := wMbs * 16
	h := (2 - frameMbsOnly) * hMaps * 16
	if cx, cy := cropX*(cl+cr), cropY*(ct+cb); cx < w && cy < h {
		w, h = w-cx, h-cy
	}
	return uint16(w), uint16(h), true
}

// H264PayloadSize looks for a sequence parameter set in an H.264 RTP
// payload (single NAL unit or STAP-A, RFC 6184 sections 5.6 and 5.7.1)
// and returns the picture size it announces.
func H264PayloadSize(payload []byte) (width, height uint16, ok bool) {
	if len(payload) < 1 {
		return 0, 0, false
	}
	switch payload[0] & 0x1f {
	case h264NALSPS:
		return H264SPSSize(payload)
	case h264NALSTAPA:
		p := payload[1:]
		for len(p) >= 3 {
			size := int(p[0])<<8 | int(p[1])
			p = p[2:]
			if size == 0 || size > len(p) {
				return 0, 0, false
			}
			if p[0]&0x1f == h264NALSPS {
				return H264SPSSize(p[:size])
			}
			p = p[size:]
		}
	}
	return 0, 0, false
}
