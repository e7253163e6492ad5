package extproc

import "google.golang.org/grpc"

// UntunedServerOptions are ServerOptions without the transport tuning, for
// the benchmark that shows what the tuning is worth.
func (s *Server) UntunedServerOptions() []grpc.ServerOption { return s.requiredOptions() }
