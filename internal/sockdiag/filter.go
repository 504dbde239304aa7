package sockdiag

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// A dump request may carry a program (INET_DIAG_REQ_BYTECODE) that the
// kernel runs on every socket of the dumped states before sending it, as
// ss(8) does for its filters: a socket is sent when the program's jumps
// end exactly at its end. The kernel still walks the same tables; the
// filter saves the copying and parsing of the sockets it rejects.
// Wire format: include/uapi/linux/inet_diag.h (struct inet_diag_bc_op:
// code, yes (u8), no (u16), jumps counted in bytes from the op).
const (
	// attrReqBytecode is INET_DIAG_REQ_BYTECODE, the request attribute
	// holding the program.
	attrReqBytecode = 1
	// bcJmp is INET_DIAG_BC_JMP: always jumps by no.
	bcJmp = 1
	// bcSEq is INET_DIAG_BC_S_EQ: the local port equals the no field of
	// the next op.
	bcSEq = 11
	// bcOpLen is sizeof(struct inet_diag_bc_op).
	bcOpLen = 4
	// portTestLen is one S_EQ test and the op carrying its port.
	portTestLen = 2 * bcOpLen
)

// MaxFilterPorts is the most ports one PortFilter matches: each adds 12
// bytes to the program, whose jumps are 16-bit.
const MaxFilterPorts = 4096

// PortFilter returns a program for DumpFiltered that passes the sockets
// whose local port is one of ports (duplicates ignored). It needs no
// privilege. No ports is an error, and so are more than MaxFilterPorts.
//
// The program is a chain of tests: a port that matches jumps to a JMP
// that leaves the program at its end (pass); one that does not falls to
// the next test; the last test's miss jumps past the end (reject). The
// kernel's audit (inet_diag_bc_audit) follows the "yes" jumps from the
// start and wants every "no" to land on an op that chain reaches, which
// the JMPs (yes: the next op) guarantee; ss(8) builds its "or" the same
// way.
func PortFilter(ports []uint16) ([]byte, error) {
	ps := slices.Clone(ports)
	slices.Sort(ps)
	ps = slices.Compact(ps)
	switch {
	case len(ps) == 0:
		return nil, fmt.Errorf("sock_diag port filter: no port")
	case len(ps) > MaxFilterPorts:
		return nil, fmt.Errorf("sock_diag port filter: %d ports, at most %d", len(ps), MaxFilterPorts)
	}
	n := len(ps)*(portTestLen+bcOpLen) - bcOpLen
	b := make([]byte, n)
	for i, p := range ps {
		off := i * (portTestLen + bcOpLen)
		putOp(b[off:], bcSEq, portTestLen, portTestLen+bcOpLen)
		putOp(b[off+bcOpLen:], 0, 0, p)
		if i < len(ps)-1 {
			// After a match: jump to the end of the program.
			jmp := off + portTestLen
			putOp(b[jmp:], bcJmp, bcOpLen, uint16(n-jmp))
		}
	}
	return b, nil
}

func putOp(b []byte, code, yes uint8, no uint16) {
	b[0], b[1] = code, yes
	binary.NativeEndian.PutUint16(b[2:4], no)
}

// appendFilter appends program as the INET_DIAG_REQ_BYTECODE attribute of
// a request.
func appendFilter(req, program []byte) []byte {
	out := make([]byte, len(req), len(req)+4+len(program)+3)
	copy(out, req)
	out = binary.NativeEndian.AppendUint16(out, uint16(4+len(program)))
	out = binary.NativeEndian.AppendUint16(out, attrReqBytecode)
	out = append(out, program...)
	for len(out)%4 != 0 { // NLA_ALIGN
		out = append(out, 0)
	}
	return out
}

// RunFilter runs program on a socket whose local port is port, as the
// kernel would (inet_diag_bc_run), for the ops PortFilter emits; other ops
// reject. It is for tests and fakes of the kernel.
func RunFilter(program []byte, port uint16) bool {
	pc, left := 0, len(program)
	for left > 0 {
		if pc+bcOpLen > len(program) {
			return false
		}
		code, yes, no := program[pc], int(program[pc+1]), int(binary.NativeEndian.Uint16(program[pc+2:pc+4]))
		var ok bool
		switch code {
		case bcJmp:
			ok = false
		case bcSEq:
			if pc+portTestLen > len(program) {
				return false
			}
			ok = port == binary.NativeEndian.Uint16(program[pc+bcOpLen+2:pc+bcOpLen+4])
		default:
			return false
		}
		step := no
		if ok {
			step = yes
		}
		if step <= 0 {
			return false // the kernel's audit refuses such a program
		}
		pc += step
		left -= step
	}
	return left == 0
}
