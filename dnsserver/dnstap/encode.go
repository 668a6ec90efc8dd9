package dnstap

import (
	pb "github.com/dnstap/golang-dnstap"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of dnstap.proto (github.com/dnstap/dnstap.pb), which the
// golang-dnstap types are generated from.
const (
	fDnstapIdentity protowire.Number = 1
	fDnstapVersion  protowire.Number = 2
	fDnstapMessage  protowire.Number = 14
	fDnstapType     protowire.Number = 15

	fMsgType             protowire.Number = 1
	fMsgSocketFamily     protowire.Number = 2
	fMsgSocketProtocol   protowire.Number = 3
	fMsgQueryAddress     protowire.Number = 4
	fMsgResponseAddress  protowire.Number = 5
	fMsgQueryPort        protowire.Number = 6
	fMsgResponsePort     protowire.Number = 7
	fMsgQueryTimeSec     protowire.Number = 8
	fMsgQueryTimeNsec    protowire.Number = 9
	fMsgQueryMessage     protowire.Number = 10
	fMsgResponseTimeSec  protowire.Number = 12
	fMsgResponseTimeNsec protowire.Number = 13
	fMsgResponseMessage  protowire.Number = 14
)

// encoder turns slots into dnstap protobuf bytes. It writes the wire
// format directly with protowire, into two buffers it reuses: the
// reflection-driven proto.Marshal of the golang-dnstap types cost a
// large part of a query's CPU budget with dnstap on; this costs a fraction
// of that and allocates nothing (docs/performance.md, "dnstap"). The tests decode
// every message with the golang-dnstap types and compare it with the
// message those types marshal.
type encoder struct {
	identity, version []byte
	msg, buf          []byte
}

func (e *encoder) init(cfg Config) {
	e.identity, e.version = []byte(cfg.Identity), []byte(cfg.Version)
	e.msg = make([]byte, 0, 4096)
	e.buf = make([]byte, 0, 4096)
}

// encode returns the AUTH_QUERY (query true) or AUTH_RESPONSE message of
// sl. The bytes are valid until the next call.
func (e *encoder) encode(sl *slot, query bool) []byte {
	m := e.msg[:0]
	typ := pb.Message_AUTH_RESPONSE
	if query {
		typ = pb.Message_AUTH_QUERY
	}
	m = appendVarint(m, fMsgType, uint64(typ))

	client := sl.client.Addr().Unmap()
	server := sl.server.Addr().Unmap()
	var ca, sa []byte
	var c4, s4 [4]byte
	var c16, s16 [16]byte
	family := pb.SocketFamily_INET6
	if client.Is4() {
		family = pb.SocketFamily_INET
		c4 = client.As4()
		ca = c4[:]
		// The server's address is of the client's family when the socket
		// was bound to one; a wildcard bind reports the unspecified address.
		if server.Is4() {
			s4 = server.As4()
			sa = s4[:]
		}
	} else {
		c16 = client.As16()
		ca = c16[:]
		if server.Is6() {
			s16 = server.As16()
			sa = s16[:]
		}
	}
	proto := pb.SocketProtocol_UDP
	if sl.tcp {
		proto = pb.SocketProtocol_TCP
	}
	m = appendVarint(m, fMsgSocketFamily, uint64(family))
	m = appendVarint(m, fMsgSocketProtocol, uint64(proto))
	m = appendBytes(m, fMsgQueryAddress, ca)
	if sa != nil {
		m = appendBytes(m, fMsgResponseAddress, sa)
	}
	m = appendVarint(m, fMsgQueryPort, uint64(sl.client.Port()))
	m = appendVarint(m, fMsgResponsePort, uint64(sl.server.Port()))
	m = appendVarint(m, fMsgQueryTimeSec, uint64(sl.qt/1e9))
	m = protowire.AppendTag(m, fMsgQueryTimeNsec, protowire.Fixed32Type)
	m = protowire.AppendFixed32(m, uint32(sl.qt%1e9))
	if query {
		m = appendBytes(m, fMsgQueryMessage, sl.q)
	} else {
		m = appendVarint(m, fMsgResponseTimeSec, uint64(sl.rt/1e9))
		m = protowire.AppendTag(m, fMsgResponseTimeNsec, protowire.Fixed32Type)
		m = protowire.AppendFixed32(m, uint32(sl.rt%1e9))
		m = appendBytes(m, fMsgResponseMessage, sl.r)
	}
	e.msg = m

	b := e.buf[:0]
	if len(e.identity) > 0 {
		b = appendBytes(b, fDnstapIdentity, e.identity)
	}
	if len(e.version) > 0 {
		b = appendBytes(b, fDnstapVersion, e.version)
	}
	b = appendBytes(b, fDnstapMessage, m)
	b = appendVarint(b, fDnstapType, uint64(pb.Dnstap_MESSAGE))
	e.buf = b
	return b
}

func appendVarint(b []byte, n protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytes(b []byte, n protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}
