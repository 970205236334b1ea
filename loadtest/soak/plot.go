package main

import (
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strconv"
	"strings"
)

// Plot geometry, in pixels.
const (
	plotW, plotH   = 640, 320
	marginL        = 60
	marginR        = 16
	marginT        = 28
	marginB        = 36
	glyphScale     = 2 // the 3×5 font drawn at 6×10
	glyphW, glyphH = 3, 5
)

var (
	colBG    = color.RGBA{255, 255, 255, 255}
	colAxis  = color.RGBA{40, 40, 40, 255}
	colGrid  = color.RGBA{225, 225, 225, 255}
	colLine  = color.RGBA{20, 90, 200, 255}
	colMark  = color.RGBA{200, 60, 40, 255}
	colLabel = color.RGBA{30, 30, 30, 255}
)

// font3x5 is a 3×5 bitmap font: five rows of three pixels per glyph,
// '#' set, rows separated by '|'.
var font3x5 = map[rune]string{
	'0': "###|#.#|#.#|#.#|###", '1': ".#.|##.|.#.|.#.|###", '2': "###|..#|###|#..|###", '3': "###|..#|###|..#|###",
	'4': "#.#|#.#|###|..#|..#", '5': "###|#..|###|..#|###", '6': "###|#..|###|#.#|###", '7': "###|..#|..#|..#|..#",
	'8': "###|#.#|###|#.#|###", '9': "###|#.#|###|..#|###", 'A': ".#.|#.#|###|#.#|#.#", 'B': "##.|#.#|##.|#.#|##.",
	'C': "###|#..|#..|#..|###", 'D': "##.|#.#|#.#|#.#|##.", 'E': "###|#..|###|#..|###", 'F': "###|#..|###|#..|#..",
	'G': "###|#..|#.#|#.#|###", 'H': "#.#|#.#|###|#.#|#.#", 'I': "###|.#.|.#.|.#.|###", 'J': "..#|..#|..#|#.#|###",
	'K': "#.#|#.#|##.|#.#|#.#", 'L': "#..|#..|#..|#..|###", 'M': "#.#|###|###|#.#|#.#", 'N': "##.|#.#|#.#|#.#|#.#",
	'O': "###|#.#|#.#|#.#|###", 'P': "###|#.#|###|#..|#..", 'Q': "###|#.#|#.#|###|..#", 'R': "###|#.#|##.|#.#|#.#",
	'S': "###|#..|###|..#|###", 'T': "###|.#.|.#.|.#.|.#.", 'U': "#.#|#.#|#.#|#.#|###", 'V': "#.#|#.#|#.#|#.#|.#.",
	'W': "#.#|#.#|###|###|#.#", 'X': "#.#|#.#|.#.|#.#|#.#", 'Y': "#.#|#.#|.#.|.#.|.#.", 'Z': "###|..#|.#.|#..|###",
	' ': "...|...|...|...|...", '.': "...|...|...|...|.#.", '-': "...|...|###|...|...", '+': "...|.#.|###|.#.|...",
	':': "...|.#.|...|.#.|...", '/': "..#|..#|.#.|#..|#..", '(': ".#.|#..|#..|#..|.#.", ')': ".#.|..#|..#|..#|.#.",
	'_': "...|...|...|...|###", '%': "#.#|..#|.#.|#..|#.#",
}

func init() {
	for r, g := range font3x5 {
		font3x5[r] = strings.ReplaceAll(g, "|", "")
	}
}

type canvas struct{ img *image.RGBA }

func (c canvas) set(x, y int, col color.RGBA) {
	if image.Pt(x, y).In(c.img.Rect) {
		c.img.SetRGBA(x, y, col)
	}
}

func (c canvas) hline(x0, x1, y int, col color.RGBA) {
	for x := x0; x <= x1; x++ {
		c.set(x, y, col)
	}
}

func (c canvas) vline(x, y0, y1 int, col color.RGBA) {
	for y := y0; y <= y1; y++ {
		c.set(x, y, col)
	}
}

// line draws from (x0,y0) to (x1,y1), two pixels thick (Bresenham).
func (c canvas) line(x0, y0, x1, y1 int, col color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		c.set(x0, y0, col)
		c.set(x0, y0+1, col)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

// text draws s (upper-cased) with its top-left corner at (x, y).
func (c canvas) text(x, y int, s string, col color.RGBA) {
	for _, r := range strings.ToUpper(s) {
		g, ok := font3x5[r]
		if !ok {
			g = font3x5[' ']
		}
		for gy := 0; gy < glyphH; gy++ {
			for gx := 0; gx < glyphW; gx++ {
				if g[gy*glyphW+gx] != '#' {
					continue
				}
				for py := 0; py < glyphScale; py++ {
					for px := 0; px < glyphScale; px++ {
						c.set(x+gx*glyphScale+px, y+gy*glyphScale+py, col)
					}
				}
			}
		}
		x += (glyphW + 1) * glyphScale
	}
}

func textWidth(s string) int { return len(s) * (glyphW + 1) * glyphScale }

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}

// niceNumber formats an axis value compactly.
func niceNumber(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "K"
	case a >= 100 || v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// writePlot draws one series over time as a line chart: title, y axis from
// 0 to the maximum with four grid lines, x axis in seconds, and a red
// vertical mark where the load stopped.
func writePlot(path, title string, ts, vs []float64, loadEnd float64) error {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	c := canvas{img}
	for y := 0; y < plotH; y++ {
		c.hline(0, plotW-1, y, colBG)
	}
	x0, x1, y0, y1 := marginL, plotW-marginR, plotH-marginB, marginT
	tmax, vmax := 1.0, 1.0
	for i := range ts {
		tmax = math.Max(tmax, ts[i])
		vmax = math.Max(vmax, vs[i])
	}
	vmax *= 1.1
	px := func(t float64) int { return x0 + int(t/tmax*float64(x1-x0)) }
	py := func(v float64) int { return y0 - int(v/vmax*float64(y0-y1)) }
	for k := 0; k <= 4; k++ {
		v := vmax * float64(k) / 4
		y := py(v)
		c.hline(x0, x1, y, colGrid)
		lbl := niceNumber(v)
		c.text(x0-6-textWidth(lbl), y-glyphH*glyphScale/2, lbl, colLabel)
	}
	for k := 0; k <= 5; k++ {
		t := tmax * float64(k) / 5
		x := px(t)
		c.vline(x, y0, y0+4, colAxis)
		lbl := niceNumber(t)
		c.text(x-textWidth(lbl)/2, y0+8, lbl, colLabel)
	}
	c.hline(x0, x1, y0, colAxis)
	c.vline(x0, y1, y0, colAxis)
	if loadEnd > 0 {
		for y := y1; y < y0; y += 6 {
			c.vline(px(loadEnd), y, y+2, colMark)
		}
		lbl, x := "LOAD STOPS", px(loadEnd)+4
		if x+textWidth(lbl) > x1 {
			x = px(loadEnd) - 4 - textWidth(lbl)
		}
		c.text(x, y1+2, lbl, colMark)
	}
	for i := 1; i < len(ts); i++ {
		c.line(px(ts[i-1]), py(vs[i-1]), px(ts[i]), py(vs[i]), colLine)
	}
	if len(ts) == 1 {
		c.line(px(ts[0]), py(vs[0]), px(ts[0]), py(vs[0]), colLine)
	}
	c.text(x0, 8, title, colLabel)
	xl := "TIME S"
	c.text(x1-textWidth(xl), plotH-12, xl, colLabel)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
