//go:build !linux

package turn

// forceSocketBuffers has no forcing option off Linux; the sizes
// SetReadBuffer and SetWriteBuffer obtained are not reported.
func forceSocketBuffers(any, int, bool) socketBuffers { return socketBuffers{} }
