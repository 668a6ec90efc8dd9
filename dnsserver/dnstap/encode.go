package dnstap

import (
	pb "github.com/dnstap/golang-dnstap"
	"google.golang.org/protobuf/proto"
)

// encoder turns slots into dnstap protobuf bytes. It reuses one message,
// the values its optional fields point to and the output buffer, so the
// writer allocates nothing per message either.
type encoder struct {
	d pb.Dnstap
	m pb.Message

	typ          pb.Dnstap_Type
	mtype        pb.Message_Type
	family       pb.SocketFamily
	proto        pb.SocketProtocol
	qport, rport uint32
	qsec, rsec   uint64
	qnsec, rnsec uint32
	qaddr, raddr [16]byte

	opts proto.MarshalOptions
	buf  []byte
}

func (e *encoder) init(cfg Config) {
	e.typ = pb.Dnstap_MESSAGE
	if cfg.Identity != "" {
		e.d.Identity = []byte(cfg.Identity)
	}
	if cfg.Version != "" {
		e.d.Version = []byte(cfg.Version)
	}
	e.d.Type = &e.typ
	e.d.Message = &e.m
	e.m.Type = &e.mtype
	e.m.SocketFamily = &e.family
	e.m.SocketProtocol = &e.proto
	e.m.QueryPort = &e.qport
	e.m.ResponsePort = &e.rport
	e.m.QueryTimeSec = &e.qsec
	e.m.QueryTimeNsec = &e.qnsec
	e.buf = make([]byte, 0, 4096)
}

// encode returns the AUTH_QUERY (query true) or AUTH_RESPONSE message of
// sl. The bytes are valid until the next call.
func (e *encoder) encode(sl *slot, query bool) []byte {
	m := &e.m
	e.family = pb.SocketFamily_INET6
	n := 16
	client := sl.client.Addr().Unmap()
	if client.Is4() {
		e.family, n = pb.SocketFamily_INET, 4
		a := client.As4()
		copy(e.qaddr[:], a[:])
	} else {
		e.qaddr = client.As16()
	}
	m.QueryAddress = e.qaddr[:n]
	// The server's address is of the client's family when the socket was
	// bound to one; a wildcard bind reports the unspecified address.
	server := sl.server.Addr().Unmap()
	switch {
	case n == 4 && server.Is4():
		a := server.As4()
		copy(e.raddr[:], a[:])
		m.ResponseAddress = e.raddr[:4]
	case n == 16 && server.Is6():
		e.raddr = server.As16()
		m.ResponseAddress = e.raddr[:16]
	default:
		m.ResponseAddress = nil
	}
	e.qport, e.rport = uint32(sl.client.Port()), uint32(sl.server.Port())
	e.proto = pb.SocketProtocol_UDP
	if sl.tcp {
		e.proto = pb.SocketProtocol_TCP
	}
	e.qsec, e.qnsec = uint64(sl.qt/1e9), uint32(sl.qt%1e9)
	if query {
		e.mtype = pb.Message_AUTH_QUERY
		m.QueryMessage, m.ResponseMessage = sl.q, nil
		m.ResponseTimeSec, m.ResponseTimeNsec = nil, nil
	} else {
		e.mtype = pb.Message_AUTH_RESPONSE
		m.QueryMessage, m.ResponseMessage = nil, sl.r
		e.rsec, e.rnsec = uint64(sl.rt/1e9), uint32(sl.rt%1e9)
		m.ResponseTimeSec, m.ResponseTimeNsec = &e.rsec, &e.rnsec
	}
	b, err := e.opts.MarshalAppend(e.buf[:0], &e.d)
	if err != nil {
		// Only a message without its required fields fails, and ours has
		// them; an empty frame would still keep the stream readable.
		return e.buf[:0]
	}
	e.buf = b
	return b
}
