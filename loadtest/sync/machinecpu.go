package main

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// errProcStat is /proc/stat content that cannot be read.
var errProcStat = errors.New("sync: /proc/stat")

// machineCPU returns the busy and total CPU seconds of the whole machine
// so far (all CPUs, all processes), from the "cpu" line of /proc/stat.
// The load tool shares the machine with the server and, with PostgreSQL,
// with the database; the busy figure shows how much of the machine the run
// (and anything else running) used.
func machineCPU() (busy, total float64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseProcStat(string(data))
}

// parseProcStat reads the aggregate "cpu" line of /proc/stat (proc(5)):
// user nice system idle iowait irq softirq steal [guest guest_nice], in
// USER_HZ ticks. Idle and iowait are not busy; guest time is already
// counted in user.
func parseProcStat(s string) (busy, total float64, err error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errProcStat
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 62)
		if err != nil {
			return 0, 0, errProcStat
		}
		v[i] = n
	}
	var all uint64
	for _, n := range v {
		all += n
	}
	idle := v[3] + v[4]
	const userHZ = 100
	return float64(all-idle) / userHZ, float64(all) / userHZ, nil
}
