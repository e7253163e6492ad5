package extproc_test

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ocisigner/ocisigner/extproc/extproctest"
	"github.com/ocisigner/ocisigner/internal/envoyconfig"
)

// fakeEnvoyEnv turns the test binary into a fake Envoy (see TestMain): an
// executable that starts as Envoy does for startEnvoyProcess, so that the
// runner of a real Envoy is tested here, where there is none. Its value is
// the file the fake records what it was asked and what it did in, one
// line per event, each starting with its pid.
const fakeEnvoyEnv = "OCISIGNER_FAKE_ENVOY_RECORD"

// fakeEnvoyVersion is what the fake answers to --version, in Envoy's form.
const fakeEnvoyVersion = "envoy  version: 0000000000000000000000000000000000000000/1.40.0-fake/Clean/RELEASE/BoringSSL"

// fakeEnvoy is the fake's main. It takes only the options startEnvoyProcess
// passes, by Envoy's names, and refuses any other as Envoy's TCLAP parser
// does; loads the config file with envoyconfig.Load (exit 1 when it does not
// load, as Envoy exits on a bad config); writes the admin address to
// --admin-address-path; answers admin /ready with 503 PRE_INITIALIZING once,
// then 200 LIVE, and /listeners?format=json with the listener's port; plays
// the listener with the Envoy stand-in configured by the same file
// (extproctest.FromBootstrap), so the whole table can run through it; and
// exits 0 on SIGTERM.
func fakeEnvoy(record string) int {
	rec, err := newFakeRecord(record)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer rec.close()
	rec.add("args %s", strings.Join(os.Args[1:], " "))
	fs := flag.NewFlagSet("envoy", flag.ContinueOnError)
	var config, adminPath, logLevel string
	fs.StringVar(&config, "c", "", "")
	fs.StringVar(&config, "config-path", "", "")
	fs.StringVar(&adminPath, "admin-address-path", "", "")
	fs.StringVar(&logLevel, "l", "info", "")
	fs.StringVar(&logLevel, "log-level", "info", "")
	dynamicBaseID, baseID := fs.Bool("use-dynamic-base-id", false, ""), fs.Uint("base-id", 0, "")
	version := fs.Bool("version", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "PARSE ERROR: %v %q\n", err, fs.Args())
		return 1
	}
	if *version {
		fmt.Printf("\n%s\n\n", fakeEnvoyVersion)
		rec.add("version")
		return 0
	}
	rec.add("base-id dynamic=%v static=%d", *dynamicBaseID, *baseID)
	data, err := os.ReadFile(config)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error initializing configuration '%s': %v\n", config, err)
		return 1
	}
	rec.add("config %s", config)
	rec.keep(data)
	bs, err := envoyconfig.Load(data)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error initializing configuration '%s': %v\n", config, err)
		return 1
	}
	if err := serveFakeEnvoy(bs, adminPath, rec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// serveFakeEnvoy runs the stand-in and the admin interface until SIGTERM.
func serveFakeEnvoy(bs *bootstrapv3.Bootstrap, adminPath string, rec *fakeRecord) error {
	clusters := map[string]string{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		clusters[c.GetName()] = net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
	}
	cfg, err := extproctest.FromBootstrap(bs, clusters)
	if err != nil {
		return err
	}
	cfg.AccessLog = func(e extproctest.AccessLogEntry) {
		line, _ := extproctest.FormatAccessLog(extproctest.AccessLogFormat, e)
		fmt.Print(line)
		rec.add("request %d", e.Status)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	e, err := extproctest.New(cfg)
	if err != nil {
		return err
	}
	admin, err := net.Listen("tcp", socketAddr(bs.GetAdmin().GetAddress()))
	if err != nil {
		return err
	}
	listener := bs.GetStaticResources().GetListeners()[0]
	rec.add("listener %s at %s", listener.GetName(), socketAddr(listener.GetAddress()))
	go func() { _ = http.Serve(admin, fakeAdmin(listener.GetName(), e.Addr(), rec)) }()
	if err := os.WriteFile(adminPath, []byte(admin.Addr().String()), 0o600); err != nil {
		return err
	}
	s := <-stop
	rec.add("signal %v", s)
	admin.Close()
	err = e.Close()
	rec.add("unprocessed %d", e.Stats().ContinuedUnprocessed)
	return err
}

func socketAddr(a *corev3.Address) string {
	sa := a.GetSocketAddress()
	return net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
}

// fakeAdmin is the admin interface's /ready and /listeners.
func fakeAdmin(name, listening string, rec *fakeRecord) http.Handler {
	var mu sync.Mutex
	polls := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		polls++
		live := polls > 1
		mu.Unlock()
		if !live {
			rec.add("ready 503")
			http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
			return
		}
		rec.add("ready 200")
		fmt.Fprintln(w, "LIVE")
	})
	mux.HandleFunc("GET /listeners", func(w http.ResponseWriter, r *http.Request) {
		rec.add("listeners format=%s", r.URL.Query().Get("format"))
		host, port, _ := net.SplitHostPort(listening)
		var p uint32
		fmt.Sscan(port, &p)
		b, _ := protojson.Marshal(&adminv3.Listeners{ListenerStatuses: []*adminv3.ListenerStatus{{
			Name: name, LocalAddress: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}},
		}}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	return mux
}

// fakeRecord appends the fake's events to the record file; several fakes
// may share one (each line is one write to a file opened O_APPEND).
type fakeRecord struct {
	path string
	f    *os.File
	mu   sync.Mutex
}

func newFakeRecord(path string) (*fakeRecord, error) {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	return &fakeRecord{path: path, f: f}, nil
}

func (r *fakeRecord) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.f, "%d %s\n", os.Getpid(), fmt.Sprintf(format, args...))
}

// keep saves the config file as the fake got it, next to the record.
func (r *fakeRecord) keep(config []byte) {
	path := fmt.Sprintf("%s.%d.json", r.path, os.Getpid())
	if err := os.WriteFile(path, config, 0o600); err != nil {
		r.add("keep: %v", err)
	}
}

func (r *fakeRecord) close() { r.f.Close() }

// fakeRun is what one fake process recorded.
type fakeRun struct {
	pid    string
	events []string
}

// readFakeRecord splits a record by process, in the order processes
// started.
func readFakeRecord(path string) ([]fakeRun, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var runs []fakeRun
	index := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		pid, ev, ok := strings.Cut(line, " ")
		if !ok {
			return nil, errors.New("malformed record line: " + line)
		}
		i, seen := index[pid]
		if !seen {
			i = len(runs)
			index[pid] = i
			runs = append(runs, fakeRun{pid: pid})
		}
		runs[i].events = append(runs[i].events, ev)
	}
	return runs, nil
}
