package egress

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"code.dny.dev/ssrf"
	"github.com/stretchr/testify/require"

	"github.com/eventconfigservice/ecs/platform/config"
)

var loopbackOnly = Config{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}

func TestAddresses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		// blocked by default, and with loopbackOnly
		blocked, blockedLoopbackAllowed bool
	}{
		{"127.0.0.1", true, false},
		{"127.9.9.9", true, false},
		{"10.0.0.1", true, true},
		{"172.16.0.1", true, true},
		{"192.168.1.1", true, true},
		{"169.254.169.254", true, true}, // cloud metadata
		{"100.64.0.1", true, true},      // shared address space (CGNAT)
		{"0.0.0.0", true, true},
		{"224.0.0.1", true, true},
		{"255.255.255.255", true, true},
		{"::1", true, false},
		{"::", true, true},
		{"fe80::1", true, true},
		{"fe80::1%eth0", true, true},
		{"fc00::1", true, true},
		{"ff02::1", true, true},
		{"::ffff:127.0.0.1", true, false}, // IPv4-mapped: judged as 127.0.0.1
		{"::ffff:169.254.169.254", true, true},
		{"::ffff:10.0.0.1", true, true},
		{"64:ff9b::7f00:1", true, true}, // NAT64 form of 127.0.0.1
		{"2001:db8::1", true, true},     // documentation
		{"93.184.215.14", false, false},
		{"8.8.8.8", false, false},
		{"::ffff:8.8.8.8", false, false},
		{"2606:4700:4700::1111", false, false},
	}
	def, lo := New(Config{}), New(loopbackOnly)
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			addr := netip.MustParseAddr(tt.addr)
			network := "tcp4"
			if addr.Unmap().Is6() {
				network = "tcp6"
			}
			hostport := netip.AddrPortFrom(addr, 8443).String()
			rawURL := (&url.URL{Scheme: "https", Host: hostport, Path: "/hook"}).String()
			for _, c := range []struct {
				name    string
				g       *Guard
				blocked bool
			}{{"default", def, tt.blocked}, {"loopback allowed", lo, tt.blockedLoopbackAllowed}} {
				errs := map[string]error{
					"CheckAddr": c.g.CheckAddr(addr),
					"Control":   c.g.Control(network, hostport, nil),
					"CheckURL":  c.g.CheckURL(t.Context(), rawURL),
				}
				for how, err := range errs {
					if !c.blocked {
						require.NoError(t, err, "%s %s", c.name, how)
						continue
					}
					require.ErrorIs(t, err, ErrBlocked, "%s %s", c.name, how)
					require.ErrorIs(t, err, ssrf.ErrProhibitedIP, "%s %s", c.name, how)
					var b *BlockedError
					require.ErrorAs(t, err, &b)
					require.Equal(t, addr.Unmap().WithZone(""), b.Addr, "%s %s names the address", c.name, how)
				}
			}
		})
	}
}

func TestControlAllowsAnyPortAndOnlyTCP(t *testing.T) {
	t.Parallel()
	g := New(Config{})
	for _, port := range []string{"1", "80", "443", "8080", "65535"} {
		require.NoError(t, g.Control("tcp4", "8.8.8.8:"+port, nil))
	}
	require.ErrorIs(t, g.Control("udp4", "8.8.8.8:53", nil), ErrBlocked)
	require.ErrorIs(t, g.Control("tcp4", "not-an-address", nil), ErrBlocked)
}

// TestDialer dials real listeners: the guard refuses before connecting, also
// when the address is written IPv4-mapped, and lets the allow-list through.
func TestDialer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			_ = c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for _, target := range []string{"127.0.0.1:" + port, "[::ffff:127.0.0.1]:" + port, "localhost:" + port} {
		d := net.Dialer{Timeout: 2 * time.Second, Control: New(Config{}).Control}
		_, err := d.DialContext(t.Context(), "tcp", target)
		require.ErrorIs(t, err, ErrBlocked, target)
		require.ErrorContains(t, err, "is not a permitted destination", target)

		d.Control = New(Config{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}).Control
		c, err := d.DialContext(t.Context(), "tcp", target)
		require.NoError(t, err, target)
		_ = c.Close()
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the allowed dial was not accepted", target)
		}
	}
	require.Empty(t, accepted, "a refused dial never connected")
}

type fakeResolver struct {
	addrs    map[string][]string
	deadline chan time.Duration
}

func (f fakeResolver) LookupNetIP(ctx context.Context, _, host string) ([]netip.Addr, error) {
	if f.deadline != nil {
		d, _ := ctx.Deadline()
		f.deadline <- time.Until(d)
	}
	as, ok := f.addrs[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range as {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	res := fakeResolver{addrs: map[string][]string{
		"public.example":  {"93.184.215.14", "2606:4700:4700::1111"},
		"rebind.example":  {"93.184.215.14", "10.0.0.7"},
		"mapped.example":  {"::ffff:127.0.0.1"},
		"metadata.google": {"169.254.169.254"},
	}}
	tests := []struct {
		url       string
		blocked   string // the address named, "" when accepted
		loopbackO bool   // accepted with loopbackOnly
	}{
		{"https://public.example/hook", "", true},
		{"https://unknown.example/hook", "", true}, // does not resolve: the dial-time check still applies
		{"https://rebind.example:8443/hook", "rebind.example resolves to 10.0.0.7", false},
		{"http://mapped.example/x", "mapped.example resolves to 127.0.0.1", true},
		{"http://metadata.google/computeMetadata/v1/", "metadata.google resolves to 169.254.169.254", false},
		{"http://localhost:9/x", "localhost resolves to 127.0.0.1", true},
		{"http://LocalHost.:9/x", "LocalHost. resolves to 127.0.0.1", true},
		{"http://api.localhost/x", "api.localhost resolves to 127.0.0.1", true},
		{"http://127.0.0.1:9/x", "127.0.0.1", true},
		{"http://[::ffff:127.0.0.1]/x", "127.0.0.1", true},
		{"http://169.254.169.254/latest/meta-data", "169.254.169.254", false},
		{"http://[fe80::1%25eth0]/x", "fe80::1", false},
	}
	def := Config{Resolver: res}
	lo := loopbackOnly
	lo.Resolver = res
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			err := New(def).CheckURL(t.Context(), tt.url)
			if tt.blocked == "" {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrBlocked)
				require.ErrorContains(t, err, tt.blocked)
			}
			err = New(lo).CheckURL(t.Context(), tt.url)
			if tt.loopbackO {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrBlocked)
			}
		})
	}
}

func TestCheckURLBoundsTheLookup(t *testing.T) {
	t.Parallel()
	res := fakeResolver{deadline: make(chan time.Duration, 1)}
	require.NoError(t, New(Config{Resolver: res}).CheckURL(context.Background(), "https://slow.example/"))
	left := <-res.deadline
	require.True(t, left > 0 && left <= ResolveTimeout, "lookup deadline %v", left)
}

func TestCheckURLRefusesWhatIsNoURL(t *testing.T) {
	t.Parallel()
	g := New(Config{})
	for _, u := range []string{"http://[::1", "mailto:x@example.com"} {
		err := g.CheckURL(t.Context(), u)
		require.Error(t, err, u)
		require.False(t, errors.Is(err, ErrBlocked), u)
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	e := config.FromMap(map[string]string{"ECS_OUTBOUND_ALLOW_NETWORKS": "10.20.0.0/16, fd00::/8"})
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("fd00::/8")}, LoadConfig(e).AllowNetworks)
	require.NoError(t, e.Err())

	e = config.FromMap(nil)
	require.Empty(t, LoadConfig(e).AllowNetworks, "default: public addresses only")

	e = config.FromMap(map[string]string{"ECS_OUTBOUND_ALLOW_NETWORKS": "10.20.0.0/16,intranet"})
	LoadConfig(e)
	require.ErrorContains(t, e.Err(), "ECS_OUTBOUND_ALLOW_NETWORKS")
}

func TestAllowLoopbackAndMappedNetworks(t *testing.T) {
	t.Parallel()
	base := Config{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	c := base.AllowLoopback()
	require.Len(t, base.AllowNetworks, 1, "base is not modified")
	g := New(c)
	for _, a := range []string{"10.1.1.1", "127.0.0.1", "::1", "::ffff:127.0.0.1"} {
		require.NoError(t, g.CheckAddr(netip.MustParseAddr(a)), a)
	}
	require.ErrorIs(t, g.CheckAddr(netip.MustParseAddr("192.168.0.1")), ErrBlocked)

	// A network written IPv4-mapped allows the IPv4 addresses it covers.
	g = New(Config{AllowNetworks: []netip.Prefix{netip.MustParsePrefix("::ffff:192.168.0.0/112")}})
	require.NoError(t, g.CheckAddr(netip.MustParseAddr("192.168.3.4")))
	require.NoError(t, g.CheckAddr(netip.MustParseAddr("::ffff:192.168.3.4")))
	require.ErrorIs(t, g.CheckAddr(netip.MustParseAddr("172.16.0.1")), ErrBlocked)
}
