// Command wsapi-grpc-go is an independent ws-api (wsapi.ExchangeService and
// wsapi.BizMsgService) written with grpc-go. Integration tests run it to prove
// the gateway works against a gRPC server that is not tonic. It keeps
// presence in memory and echoes every upstream message, like the reference
// ws-api (ws-api/src/service.rs, ws-api/src/biz.rs) with its echo handler.
//
// It is written the way grpc-go servers usually are: no explicit SendHeader,
// so the response headers of ExchangeMsg go out lazily with its first message.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	wsapi "ws-api/api/wsapi"
	wsgateway "ws-gateway/api/wsgateway"
)

// streamQueue is how many downstream messages may wait for one stream.
const streamQueue = 1024

// sessionKey names one WebSocket session: the gateway core and its sid.
type sessionKey struct {
	server string
	sid    string
}

// stream is one gateway core's ExchangeMsg stream. Every send to it goes
// through out; only the RPC's own goroutine calls ServerStream.Send.
type stream struct {
	out  chan *wsapi.Msg
	done chan struct{}
	// Guarded by backend.mu.
	server string
	closed bool
}

// send queues m for the stream; false if the stream is gone or ctx ended.
func (st *stream) send(ctx context.Context, m *wsapi.Msg) bool {
	select {
	case <-st.done:
		return false
	default:
	}
	select {
	case st.out <- m:
		return true
	case <-st.done:
		return false
	case <-ctx.Done():
		return false
	}
}

// backend is the state both services share.
type backend struct {
	mu       sync.Mutex
	streams  map[string]*stream                 // server -> newest stream
	presence map[uint64]map[sessionKey]struct{} // uid -> sessions
	groups   map[string]map[sessionKey]struct{} // group -> member sessions
}

func newBackend() *backend {
	return &backend{
		streams:  map[string]*stream{},
		presence: map[uint64]map[sessionKey]struct{}{},
		groups:   map[string]map[sessionKey]struct{}{},
	}
}

// register makes st the stream of server unless st has already ended or is
// already registered.
func (b *backend) register(server string, st *stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st.closed || st.server != "" {
		return
	}
	st.server = server
	b.streams[server] = st
}

// unregister marks st ended and removes it if it is still its server's stream.
func (b *backend) unregister(st *stream) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	st.closed = true
	if st.server != "" && b.streams[st.server] == st {
		delete(b.streams, st.server)
	}
	return st.server
}

func (b *backend) streamOf(server string) *stream {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.streams[server]
}

// allStreams is a snapshot of every registered stream by server.
func (b *backend) allStreams() map[string]*stream {
	b.mu.Lock()
	defer b.mu.Unlock()
	all := make(map[string]*stream, len(b.streams))
	for k, v := range b.streams {
		all[k] = v
	}
	return all
}

// sessions is a snapshot of the sessions of uid.
func (b *backend) sessions(uid uint64) []sessionKey {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := make([]sessionKey, 0, len(b.presence[uid]))
	for k := range b.presence[uid] {
		keys = append(keys, k)
	}
	return keys
}

func (b *backend) online() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, set := range b.presence {
		n += len(set)
	}
	return n
}

// toSession sends msg down the stream of msg.Server; whether one took it.
func (b *backend) toSession(ctx context.Context, msg *wsapi.Msg) bool {
	st := b.streamOf(msg.Server)
	if st == nil {
		return false
	}
	return st.send(ctx, msg)
}

// toEveryCore sends one message down every stream; how many took it.
func (b *backend) toEveryCore(ctx context.Context, sid, group string, payload *wsgateway.Protocol) int {
	n := 0
	for server, st := range b.allStreams() {
		msg := &wsapi.Msg{Server: server, Sid: sid, Group: group, Payload: payload}
		if st.send(ctx, msg) {
			n++
		}
	}
	return n
}

// uidForToken is ws-api's uid_for_token: the decimal value of an all-digit
// token, else FNV-1a 64 of the token masked to 63 bits.
func uidForToken(token []byte) uint64 {
	digits := len(token) > 0
	for _, c := range token {
		if c < '0' || c > '9' {
			digits = false
			break
		}
	}
	if digits {
		if uid, err := strconv.ParseUint(string(token), 10, 64); err == nil {
			return uid
		}
	}
	h := uint64(0xcbf29ce484222325)
	for _, c := range token {
		h ^= uint64(c)
		h *= 0x100000001b3
	}
	return h & (^uint64(0) >> 1)
}

// exchange is wsapi.ExchangeService.
type exchange struct {
	wsapi.UnimplementedExchangeServiceServer
	b *backend
}

func (e *exchange) ExchangeMsg(srv wsapi.ExchangeService_ExchangeMsgServer) error {
	identity := ""
	if md, ok := metadata.FromIncomingContext(srv.Context()); ok {
		if v := md.Get("x-gateway-ip"); len(v) > 0 {
			identity = v[0]
		}
	}
	shown := identity
	if shown == "" {
		shown = "?"
	}
	log.Printf("exchange stream opened identity=%s", shown)

	st := &stream{out: make(chan *wsapi.Msg, streamQueue), done: make(chan struct{})}
	if identity != "" {
		e.b.register(identity, st)
	}

	// The receiving side: registers by the first Msg.server when the
	// metadata had no identity, and echoes every message.
	recvDone := make(chan error, 1)
	go func() {
		for {
			msg, err := srv.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			if msg.Server != "" {
				e.b.register(msg.Server, st) // no-op once registered
			}
			select {
			case st.out <- msg:
			case <-st.done:
				return
			}
		}
	}()

	// The sending side: the only caller of srv.Send.
	var recvErr, sendErr error
loop:
	for {
		select {
		case msg := <-st.out:
			if sendErr = srv.Send(msg); sendErr != nil {
				break loop
			}
		case recvErr = <-recvDone:
			break loop
		}
	}
	server := e.b.unregister(st)
	if sendErr == nil && recvErr == io.EOF {
		// The gateway half-closed: deliver what is already queued.
	drain:
		for {
			select {
			case msg := <-st.out:
				if srv.Send(msg) != nil {
					break drain
				}
			default:
				break drain
			}
		}
	}
	close(st.done)
	if server == "" {
		server = "?"
	}
	reason := "end of stream"
	switch {
	case sendErr != nil:
		reason = "send failed: " + sendErr.Error()
	case recvErr != io.EOF:
		reason = recvErr.Error()
	}
	log.Printf("exchange stream closed identity=%s (%s)", server, reason)
	if sendErr != nil {
		return sendErr
	}
	return nil
}

func (e *exchange) Connect(ctx context.Context, req *wsapi.ConnectRequest) (*wsapi.ConnectReply, error) {
	if len(req.Token) == 0 {
		return nil, status.Error(codes.Unauthenticated, "missing token")
	}
	if len(req.Token) >= 4 && string(req.Token[:4]) == "deny" {
		return nil, status.Error(codes.PermissionDenied, "token denied")
	}
	uid := uidForToken(req.Token)
	key := sessionKey{server: req.Server, sid: req.Sid}
	e.b.mu.Lock()
	set := e.b.presence[uid]
	if set == nil {
		set = map[sessionKey]struct{}{}
		e.b.presence[uid] = set
	}
	set[key] = struct{}{}
	e.b.mu.Unlock()
	return &wsapi.ConnectReply{Uid: uid}, nil
}

func (e *exchange) Disconnect(ctx context.Context, req *wsapi.DisconnectRequest) (*wsapi.DisconnectReply, error) {
	key := sessionKey{server: req.Server, sid: req.Sid}
	e.b.mu.Lock()
	if set := e.b.presence[req.Uid]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(e.b.presence, req.Uid)
		}
	}
	for group, members := range e.b.groups {
		delete(members, key)
		if len(members) == 0 {
			delete(e.b.groups, group)
		}
	}
	e.b.mu.Unlock()
	return &wsapi.DisconnectReply{}, nil
}

func (e *exchange) KeepAlive(ctx context.Context, req *wsapi.KeepAliveRequest) (*wsapi.KeepAliveReply, error) {
	return &wsapi.KeepAliveReply{}, nil
}

// biz is wsapi.BizMsgService.
type biz struct {
	wsapi.UnimplementedBizMsgServiceServer
	b *backend
}

func protocol(code, payload string) *wsgateway.Protocol {
	return &wsgateway.Protocol{Type: code, Payload: []byte(payload)}
}

func (z *biz) Push(ctx context.Context, req *wsapi.BizMsg) (*wsapi.PushBizMsgReply, error) {
	payload := protocol(req.BizCode, req.BizPayload)
	var n int64
	for _, key := range z.b.sessions(req.Uid) {
		if z.b.toSession(ctx, &wsapi.Msg{Server: key.server, Sid: key.sid, Payload: payload}) {
			n++
		}
	}
	return &wsapi.PushBizMsgReply{SuccessCount: n}, nil
}

func (z *biz) Kick(ctx context.Context, req *wsapi.KickRequest) (*wsapi.KickReply, error) {
	targets := []sessionKey{{server: req.Server, sid: req.Sid}}
	if req.Sid == "" {
		targets = z.b.sessions(req.Uid)
	}
	code := req.Code
	if code == 0 {
		code = 1000
	}
	var n int64
	for _, key := range targets {
		ctl := &wsapi.Control{Op: &wsapi.Control_Close{Close: &wsapi.Close{Code: code, Reason: req.Reason}}}
		if z.b.toSession(ctx, &wsapi.Msg{Server: key.server, Sid: key.sid, Control: ctl}) {
			n++
		}
	}
	return &wsapi.KickReply{Closed: n}, nil
}

func (z *biz) membership(ctx context.Context, req *wsapi.GroupRequest, join bool) (*wsapi.GroupReply, error) {
	if req.Group == "" {
		return nil, status.Error(codes.InvalidArgument, "empty group")
	}
	var n int64
	for _, key := range z.b.sessions(req.Uid) {
		ctl := &wsapi.Control{Op: &wsapi.Control_Leave{Leave: &wsapi.Leave{Group: req.Group}}}
		if join {
			ctl = &wsapi.Control{Op: &wsapi.Control_Join{Join: &wsapi.Join{Group: req.Group}}}
		}
		if !z.b.toSession(ctx, &wsapi.Msg{Server: key.server, Sid: key.sid, Control: ctl}) {
			continue
		}
		z.b.mu.Lock()
		members := z.b.groups[req.Group]
		if join {
			if members == nil {
				members = map[sessionKey]struct{}{}
				z.b.groups[req.Group] = members
			}
			members[key] = struct{}{}
		} else if members != nil {
			delete(members, key)
			if len(members) == 0 {
				delete(z.b.groups, req.Group)
			}
		}
		z.b.mu.Unlock()
		n++
	}
	return &wsapi.GroupReply{Sessions: n}, nil
}

func (z *biz) JoinGroup(ctx context.Context, req *wsapi.GroupRequest) (*wsapi.GroupReply, error) {
	return z.membership(ctx, req, true)
}

func (z *biz) LeaveGroup(ctx context.Context, req *wsapi.GroupRequest) (*wsapi.GroupReply, error) {
	return z.membership(ctx, req, false)
}

func (z *biz) PushGroup(ctx context.Context, req *wsapi.GroupMsg) (*wsapi.PushBizMsgReply, error) {
	if req.Group == "" {
		return nil, status.Error(codes.InvalidArgument, "empty group")
	}
	z.b.mu.Lock()
	members := len(z.b.groups[req.Group])
	z.b.mu.Unlock()
	z.b.toEveryCore(ctx, "", req.Group, protocol(req.BizCode, req.BizPayload))
	return &wsapi.PushBizMsgReply{SuccessCount: int64(members)}, nil
}

func (z *biz) Broadcast(ctx context.Context, req *wsapi.BizMsg) (*wsapi.PushBizMsgReply, error) {
	online := z.b.online()
	z.b.toEveryCore(ctx, "*", "", protocol(req.BizCode, req.BizPayload))
	return &wsapi.PushBizMsgReply{SuccessCount: int64(online)}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve gRPC on")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("wsapi-grpc-go: ")

	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("cannot listen on %s: %v", *listen, err)
	}
	b := newBackend()
	s := grpc.NewServer()
	wsapi.RegisterExchangeServiceServer(s, &exchange{b: b})
	wsapi.RegisterBizMsgServiceServer(s, &biz{b: b})

	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "ws-api listening on %s\n", lis.Addr())
	out.Flush()
	log.Printf("grpc-go %s serving on %s", grpc.Version, lis.Addr())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		s.Stop()
	}()
	if err := s.Serve(lis); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
