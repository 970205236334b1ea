// Package web holds the browser client, embedded into the binary.
package web
