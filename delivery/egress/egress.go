// Package egress keeps webhook traffic away from places a subscriber's URL must
// not reach: private, loopback, link-local (the cloud metadata address
// 169.254.169.254 among them), shared, multicast and reserved networks, IPv4
// addresses written as IPv4-mapped IPv6 included. The deny list is
// code.dny.dev/ssrf's (the IANA special-purpose registries; for IPv6 everything
// outside global unicast); an allow-list of networks opens exceptions.
//
// A URL is checked twice: when a subscription is saved (CheckURL, for a clear
// answer to whoever saved it) and at every connection (Control, hooked into the
// dialer), against the address actually dialled. Only the second is a defence:
// a host name can resolve to something else by the time a webhook goes out
// (DNS rebinding).
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"code.dny.dev/ssrf"

	"github.com/eventconfigservice/ecs/platform/config"
)

// ResolveTimeout bounds the name lookup of CheckURL.
const ResolveTimeout = 3 * time.Second

// ErrBlocked is wrapped by every refusal (a *BlockedError).
var ErrBlocked = errors.New("destination not permitted")

// Resolver looks host names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config says where webhooks may go.
type Config struct {
	// AllowNetworks are networks that may be reached although the deny list
	// covers them, e.g. 10.20.0.0/16 for subscribers inside the cluster
	// (ECS_OUTBOUND_ALLOW_NETWORKS, comma-separated CIDRs; default none: only
	// public addresses). An IPv4 network also covers its IPv4-mapped IPv6 form.
	AllowNetworks []netip.Prefix
	// Resolver looks up the host names CheckURL checks (default
	// net.DefaultResolver; tests replace it). Dialling uses the system's.
	Resolver Resolver
}

// LoadConfig reads ECS_OUTBOUND_ALLOW_NETWORKS; a bad value is recorded in e.
func LoadConfig(e *config.Env) Config {
	return Config{AllowNetworks: e.Prefixes("ECS_OUTBOUND_ALLOW_NETWORKS", nil)}
}

// loopback is what AllowLoopback adds.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// AllowLoopback returns c with 127.0.0.0/8 and ::1/128 allowed too: for the dev
// app and tests, whose receivers listen on loopback.
func (c Config) AllowLoopback() Config {
	c.AllowNetworks = append(append([]netip.Prefix(nil), c.AllowNetworks...), loopback...)
	return c
}

// BlockedError is a refused destination.
type BlockedError struct {
	// Host is the name that resolved to Addr; empty when the URL or dial
	// named the address itself.
	Host string
	// Addr is the refused address, IPv4-mapped IPv6 shown as IPv4; invalid
	// when the dialled address could not be parsed.
	Addr netip.Addr
	// Reason is code.dny.dev/ssrf's error (ssrf.ErrProhibitedIP, ...).
	Reason error
}

func (e *BlockedError) Error() string {
	if e.Host != "" {
		return fmt.Sprintf("%v: %s resolves to %s: %v", ErrBlocked, e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("%v: %v", ErrBlocked, e.Reason)
}

// Unwrap gives ErrBlocked and the reason.
func (e *BlockedError) Unwrap() []error { return []error{ErrBlocked, e.Reason} }

// Guard checks destinations. It is safe for concurrent use.
type Guard struct {
	ssrf     *ssrf.Guardian
	resolver Resolver
}

// New returns a Guard for cfg.
func New(cfg Config) *Guard {
	var v4, v6 []netip.Prefix
	for _, p := range cfg.AllowNetworks {
		p = p.Masked()
		switch {
		case !p.IsValid():
		case p.Addr().Is4():
			v4 = append(v4, p)
		case p.Addr().Is4In6() && p.Bits() >= 96:
			// Addresses are unmapped before they are checked, so a mapped
			// network must be too to match anything.
			v4 = append(v4, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96))
		default:
			v6 = append(v6, p)
		}
	}
	r := cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	return &Guard{
		// Webhooks go to any port; the networks stay ssrf's tcp4 and tcp6.
		ssrf:     ssrf.New(ssrf.WithAnyPort(), ssrf.WithAllowedV4Prefixes(v4...), ssrf.WithAllowedV6Prefixes(v6...)),
		resolver: r,
	}
}

// Control is a net.Dialer Control function: it refuses a connection whose
// resolved address is not permitted, before the connection is made.
func (g *Guard) Control(network, address string, c syscall.RawConn) error {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(address); err == nil {
		addr = normalize(ap.Addr())
		address = netip.AddrPortFrom(addr, ap.Port()).String()
	}
	if err := g.ssrf.Safe(network, address, c); err != nil {
		return &BlockedError{Addr: addr, Reason: err}
	}
	return nil
}

// CheckAddr refuses an address that is not permitted (with a *BlockedError).
func (g *Guard) CheckAddr(addr netip.Addr) error {
	if b := g.check("", addr); b != nil {
		return b
	}
	return nil
}

func (g *Guard) check(host string, addr netip.Addr) *BlockedError {
	addr = normalize(addr)
	if err := g.ssrf.SafeAddr(addr); err != nil {
		return &BlockedError{Host: host, Addr: addr, Reason: err}
	}
	return nil
}

// CheckURL refuses a URL whose host is, or resolves to, an address that is not
// permitted; the error (a *BlockedError) names the address. A host name is
// looked up within ResolveTimeout; one that does not resolve is accepted, since
// the dial-time check still applies. "localhost" and names under it are taken
// as loopback without a lookup.
func (g *Guard) CheckURL(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("egress: %w", err)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("egress: %q names no host", rawURL)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return g.CheckAddr(addr)
	}
	addrs, ok := g.lookup(ctx, host)
	if !ok {
		return nil
	}
	for _, a := range addrs {
		if b := g.check(host, a); b != nil {
			return b
		}
	}
	return nil
}

func (g *Guard) lookup(ctx context.Context, host string) ([]netip.Addr, bool) {
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		// RFC 6761: these are loopback whatever a resolver says.
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}, true
	}
	ctx, cancel := context.WithTimeout(ctx, ResolveTimeout)
	defer cancel()
	addrs, err := g.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return nil, false
	}
	return addrs, true
}

// normalize unmaps an IPv4-mapped IPv6 address (so ::ffff:127.0.0.1 is judged
// as 127.0.0.1, not merely as "not global unicast", and an IPv4 allow-list
// applies to it) and drops an IPv6 zone (a zoned address matches no prefix).
func normalize(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}
