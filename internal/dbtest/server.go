//go:build unix

package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a private instance of a real database server binary (PostgreSQL,
// or MariaDB for the mysql dialect) with its own data directory and port,
// for tests that stop and restart the server. It never touches the shared
// servers. It is stopped and its files removed when the test ends.
type Server struct {
	Dialect string // "postgres" or "mysql"
	Addr    string // 127.0.0.1:port, kept across restarts

	dir     string
	dsn     string
	driver  string
	bin     string
	args    []string
	cred    *syscall.Credential // nil: run as the current user
	stopSig os.Signal           // graceful shutdown
	killSig os.Signal           // immediate shutdown, as in a crash

	cmd    *exec.Cmd
	exited chan struct{}
}

const serverStartTimeout = 60 * time.Second

// PrivatePostgres initialises and starts a PostgreSQL server of its own,
// from the binaries under /usr/lib/postgresql/*/bin. It skips the test if
// they are missing. PostgreSQL refuses to run as root: as root, it runs as
// the postgres system user.
func PrivatePostgres(t testing.TB) *Server {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(bins) == 0 {
		t.Skip("skipping: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (install postgresql)")
	}
	sort.Slice(bins, func(i, j int) bool { return pgVersion(bins[i]) < pgVersion(bins[j]) })
	binDir := filepath.Dir(bins[len(bins)-1])
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = userCredential(t, "postgres")
	}
	s := newServer(t, "postgres", cred)
	data := filepath.Join(s.dir, "data")
	s.run(t, filepath.Join(binDir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	port := portOf(s.Addr)
	s.bin = filepath.Join(binDir, "postgres")
	s.args = []string{"-D", data, "-p", port, "-k", s.dir, "-c", "listen_addresses=127.0.0.1", "-c", "shared_buffers=32MB"}
	s.driver = "pgx"
	s.dsn = "postgres://postgres@" + s.Addr + "/postgres?sslmode=disable"
	s.stopSig, s.killSig = syscall.SIGINT, syscall.SIGQUIT // fast and immediate shutdown
	s.Start(t)
	return s
}

// PrivateMariaDB initialises and starts a MariaDB (or MySQL) server of its
// own with mariadb-install-db and mariadbd. It skips the test if they are
// missing. Grant tables are skipped: it listens on 127.0.0.1 only.
func PrivateMariaDB(t testing.TB) *Server {
	t.Helper()
	install := lookPath("mariadb-install-db", "mysql_install_db")
	server := lookPath("mariadbd", "mysqld")
	if install == "" || server == "" {
		t.Skip("skipping: no MariaDB server binaries (mariadb-install-db, mariadbd) found (install mariadb-server)")
	}
	s := newServer(t, "mysql", nil)
	data := filepath.Join(s.dir, "data")
	var asRoot []string
	if os.Geteuid() == 0 {
		asRoot = []string{"--user=root"} // mariadbd refuses root unless told
	}
	s.run(t, install, append([]string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve"}, asRoot...)...)
	s.bin = server
	s.args = append([]string{"--no-defaults", "--datadir=" + data, "--port=" + portOf(s.Addr), "--bind-address=127.0.0.1",
		"--socket=" + filepath.Join(s.dir, "mysqld.sock"), "--pid-file=" + filepath.Join(s.dir, "mysqld.pid"),
		"--log-error=" + filepath.Join(s.dir, "error.log"), "--skip-grant-tables", "--skip-name-resolve",
		"--innodb-buffer-pool-size=64M"}, asRoot...)
	s.driver = "mysql"
	s.dsn = "root@tcp(" + s.Addr + ")/"
	s.stopSig, s.killSig = syscall.SIGTERM, syscall.SIGKILL
	s.Start(t)
	return s
}

func newServer(t testing.TB, dialect string, cred *syscall.Credential) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "ebt-"+dialect+"-")
	if err != nil {
		t.Fatal(err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Dialect: dialect, Addr: "127.0.0.1:" + freePort(t), dir: dir, cred: cred}
	t.Cleanup(func() {
		s.shutdown(s.killSig)
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		} else {
			t.Logf("%s server files kept in %s", dialect, dir)
		}
	})
	return s
}

// NewDatabase creates an isolated database on the server, as MySQL and
// Postgres do on the shared ones.
func (s *Server) NewDatabase(t testing.TB) *Database {
	t.Helper()
	if s.Dialect == "postgres" {
		return postgresOn(t, s.dsn, false)
	}
	return mysqlOn(t, s.dsn, false)
}

// Start runs the server and waits until it accepts connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if s.cmd != nil {
		t.Fatalf("%s server already running", s.Dialect)
	}
	logFile, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", s.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	db, err := sql.Open(s.driver, s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(serverStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-exited:
			s.cmd = nil
			t.Fatalf("%s server exited while starting: %v\n%s", s.Dialect, err, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s server did not accept connections within %s: %v\n%s", s.Dialect, serverStartTimeout, err, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down cleanly and waits for it to exit.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.shutdown(s.stopSig); err != nil {
		t.Fatal(err)
	}
}

// Crash stops the server at once, without a clean shutdown (PostgreSQL's
// immediate mode, SIGKILL for MariaDB): the next start recovers from its log.
func (s *Server) Crash(t testing.TB) {
	t.Helper()
	if err := s.shutdown(s.killSig); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) shutdown(sig os.Signal) error {
	if s.cmd == nil {
		return nil
	}
	defer func() { s.cmd = nil }()
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
		return nil
	case <-time.After(serverStartTimeout):
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	return fmt.Errorf("%s server did not stop within %s on %v; killed", s.Dialect, serverStartTimeout, sig)
}

// run runs a setup command (initdb, install-db) to completion.
func (s *Server) run(t testing.TB, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Setpgid: true}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		err = ctx.Err()
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(bin), err, out)
	}
}

func (s *Server) logTail() string {
	var out []string
	for _, name := range []string{"server.log", "error.log"} {
		b, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		out = append(out, lines[max(0, len(lines)-20):]...)
	}
	return strings.Join(out, "\n")
}

func userCredential(t testing.TB, name string) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("skipping: running as root, and PostgreSQL needs a non-root user %q to run as: %v", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

func lookPath(names ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
			if p := filepath.Join(dir, n); isExecutable(p) {
				return p
			}
		}
	}
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func pgVersion(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return v
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return portOf(ln.Addr().String())
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
