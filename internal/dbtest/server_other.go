//go:build !unix

package dbtest

import "testing"

// Server is a private database server; only available on Unix.
type Server struct {
	Dialect string
	Addr    string
}

// PrivatePostgres skips: private servers need Unix.
func PrivatePostgres(t testing.TB) *Server {
	t.Skip("skipping: private database servers are started on Unix only")
	return nil
}

// PrivateMariaDB skips: private servers need Unix.
func PrivateMariaDB(t testing.TB) *Server {
	t.Skip("skipping: private database servers are started on Unix only")
	return nil
}

func (s *Server) NewDatabase(t testing.TB) *Database { return nil }
func (s *Server) Start(t testing.TB)                 {}
func (s *Server) Stop(t testing.TB)                  {}
func (s *Server) Crash(t testing.TB)                 {}
