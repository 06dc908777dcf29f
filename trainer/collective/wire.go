package collective

// This file is what protoc would generate for the service below, written by hand because
// the build has no protoc and the messages are opaque frames anyway:
//
//	service Collective { rpc Send(stream Frame) returns (Empty); }
//
// A Frame is raw bytes: an 8-byte little-endian collective sequence number, then the
// payload (an all-gather's blob). One client stream per ordered pair of ranks carries the
// small frames from one rank to another, in order; the values of all-reduces and
// broadcasts go on the bulk links (bulk.go).

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

const (
	serviceName = "herd.collective.Collective"
	sendMethod  = "/" + serviceName + "/Send"
)

// sendServer is the server side of the Send stream.
type sendServer interface {
	send(stream grpc.ServerStream) error
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*sendServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Send",
		ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			return srv.(sendServer).send(stream)
		},
	}},
	Metadata: "herd/collective.proto",
}

// rawCodec passes frames through without copying what it need not. Marshal hands gRPC
// a pooled frame, which gRPC returns to the pool once written; Unmarshal keeps the
// received bytes as one pooled buffer (gRPC's own when the frame arrived in one piece,
// else one copy), which the receiver frees after decoding.
type rawCodec struct{}

// pool holds frame buffers, so that steady traffic allocates (and clears) nothing.
var pool = mem.DefaultBufferPool()

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("collective codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.NewBuffer(b, pool)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*mem.Buffer)
	if !ok {
		return fmt.Errorf("collective codec: cannot unmarshal into %T", v)
	}
	*b = data.MaterializeToBuffer(pool)
	return nil
}

func (rawCodec) Name() string { return "herd-raw" }
