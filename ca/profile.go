package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/fleetpki/fleetpki/pki"
)

// maxCommonName is RFC 5280's ub-common-name.
const maxCommonName = 64

// DefaultProfile is the profile used when a request names none.
const DefaultProfile = "device"

// DeviceTemplate is the x509util template of the built-in device profile
// (DESIGN.md, "Certificates"). Custom profiles may start from it. Template
// data: .Subject and .SANs (x509util's names, derived from the device id),
// .DeviceID, .DeviceURI, .OCSPURL, .IssuerURL, .CRLURL and .Profile.
// .Insecure.CR holds the request's public key only: the CSR's names never
// reach a template.
const DeviceTemplate = `{
	"subject": {{ toJson .Subject }},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"],
	"ocspServer": [{{ toJson .OCSPURL }}],
	"issuingCertificateURL": [{{ toJson .IssuerURL }}],
	"crlDistributionPoints": [{{ toJson .CRLURL }}]
}`

// ServiceTemplate is the x509util template of the built-in server profile:
// a TLS server certificate for a service devices talk to (a broker), with
// the DNS names and IP addresses of the request (checked against the
// enrollment credential's name pattern), the first DNS name as CN. The broker
// profile is the same with clientAuth too, so that a broker can present
// it to fleetpki. Template data as DeviceTemplate's, with .Names.
const ServiceTemplate = `{
	"subject": {{ toJson .Subject }},
	"sans": {{ toJson .SANs }},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": {{ toJson .ExtKeyUsage }},
	"ocspServer": [{{ toJson .OCSPURL }}],
	"issuingCertificateURL": [{{ toJson .IssuerURL }}],
	"crlDistributionPoints": [{{ toJson .CRLURL }}]
}`

// Profile kinds: what a profile's certificates name.
const (
	// KindDevice certificates name a device (its id as CN and URI SAN).
	KindDevice = "device"
	// KindService certificates name a service by DNS names and IP addresses.
	KindService = "service"
)

// Names of the built-in profiles.
const (
	ServerProfile = "server"
	BrokerProfile = "broker"
)

// Key types a profile may accept (ProfileSpec.KeyTypes).
const (
	KeyTypeECDSAP256 = "ecdsa-p256"
	KeyTypeECDSAP384 = "ecdsa-p384"
	KeyTypeRSA       = "rsa" // 2048 to 8192 bits, public exponent odd and ≥ 65537
)

// Limits of device keys.
const (
	minRSABits     = 2048
	maxRSABits     = 8192
	minRSAExponent = 65537
)

// ProfileSpec is a profile file in Config.ProfilesDir (one JSON object per
// *.json file), e.g.
//
//	{"name": "sensor", "validity": "90d", "keyTypes": ["ecdsa-p256"],
//	 "allowEd25519": false, "template": "{ \"subject\": {{ toJson .Subject }}, … }"}
type ProfileSpec struct {
	// Name is how requests select the profile: 1–64 of a-z 0-9 . _ - .
	// A file named "device" replaces the built-in device profile.
	Name string `json:"name"`
	// Validity is the certificate lifetime: a Go duration ("2160h") or whole
	// days ("90d"); at least one hour. Certificates never outlive the issuing CA.
	Validity string `json:"validity"`
	// KeyTypes lists the accepted device keys (ecdsa-p256, ecdsa-p384, rsa);
	// empty accepts all three.
	KeyTypes []string `json:"keyTypes,omitempty"`
	// AllowEd25519 also accepts Ed25519 keys, which not every TLS stack supports.
	AllowEd25519 bool `json:"allowEd25519,omitempty"`
	// Template is the x509util JSON template; see DeviceTemplate for its
	// data. Empty: the built-in template of the kind (DeviceTemplate or
	// ServiceTemplate), e.g. to change only a built-in profile's validity.
	Template string `json:"template,omitempty"`
	// FreshestCRL adds the Freshest CRL extension (RFC 5280 §5.2.6) naming
	// the delta CRL, for relying parties that fetch deltas between full CRLs.
	FreshestCRL bool `json:"freshestCRL,omitempty"`
	// Kind is "device" (the default) or "service": a service profile's
	// certificates carry the request's DNS names and IP addresses, which the
	// credential's name pattern must allow; a device profile takes none.
	Kind string `json:"kind,omitempty"`
	// ExtKeyUsage of a service profile's certificates (default serverAuth).
	ExtKeyUsage []string `json:"extKeyUsage,omitempty"`
}

// profile is a compiled ProfileSpec; its template is parsed once.
type profile struct {
	name         string
	kind         string
	extKeyUsage  []string
	validity     time.Duration
	keyTypes     []string
	allowEd25519 bool
	freshestCRL  bool
	tmpl         *template.Template
}

var profileNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// builtinSpecs are the device profile of DESIGN.md and the service
// profiles: server (serverAuth) and broker (serverAuth and clientAuth), 30
// days, renewed by their holders at two thirds.
var builtinSpecs = []ProfileSpec{
	{Name: DefaultProfile, Validity: "365d", KeyTypes: []string{KeyTypeECDSAP256, KeyTypeECDSAP384, KeyTypeRSA}, Template: DeviceTemplate},
	{Name: ServerProfile, Kind: KindService, Validity: "30d", KeyTypes: []string{KeyTypeECDSAP256, KeyTypeECDSAP384, KeyTypeRSA},
		ExtKeyUsage: []string{"serverAuth"}, Template: ServiceTemplate},
	{Name: BrokerProfile, Kind: KindService, Validity: "30d", KeyTypes: []string{KeyTypeECDSAP256, KeyTypeECDSAP384, KeyTypeRSA},
		ExtKeyUsage: []string{"serverAuth", "clientAuth"}, Template: ServiceTemplate},
}

// compileProfile checks a spec and parses its template.
func compileProfile(spec ProfileSpec) (*profile, error) {
	if !profileNameRE.MatchString(spec.Name) {
		return nil, pki.Errorf(pki.Invalid, "profile name %q must be 1 to 64 of a-z, 0-9, '.', '_', '-'", spec.Name)
	}
	validity, err := parseValidity(spec.Validity)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", spec.Name, err)
	}
	keyTypes := spec.KeyTypes
	if len(keyTypes) == 0 {
		keyTypes = []string{KeyTypeECDSAP256, KeyTypeECDSAP384, KeyTypeRSA}
	}
	for _, kt := range keyTypes {
		switch kt {
		case KeyTypeECDSAP256, KeyTypeECDSAP384, KeyTypeRSA:
		case "ed25519":
			return nil, pki.Errorf(pki.Invalid, "profile %q: accept Ed25519 with \"allowEd25519\": true, not in keyTypes", spec.Name)
		default:
			return nil, pki.Errorf(pki.Invalid, "profile %q: unknown key type %q (want %s, %s or %s)", spec.Name, kt, KeyTypeECDSAP256, KeyTypeECDSAP384, KeyTypeRSA)
		}
	}
	kind := spec.Kind
	switch kind {
	case "":
		kind = KindDevice
	case KindDevice, KindService:
	default:
		return nil, pki.Errorf(pki.Invalid, "profile %q: kind %q is not device or service", spec.Name, spec.Kind)
	}
	text := spec.Template
	if text == "" {
		// The built-in template of the kind: a profile may change only the
		// validity or key types.
		text = map[string]string{KindDevice: DeviceTemplate, KindService: ServiceTemplate}[kind]
	}
	// missingkey=error turns a misspelt field (.DeviceId) into an error at
	// the dry run below instead of "<no value>" in a certificate.
	tmpl, err := template.New(spec.Name).Funcs(x509util.GetFuncMap()).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, pki.Wrap(pki.Invalid, err, fmt.Sprintf("profile %q: the template does not parse", spec.Name))
	}
	eku := spec.ExtKeyUsage
	if kind == KindService && len(eku) == 0 {
		eku = []string{"serverAuth"}
	}
	for _, u := range eku {
		if u != "serverAuth" && u != "clientAuth" {
			return nil, pki.Errorf(pki.Invalid, "profile %q: extKeyUsage %q is not serverAuth or clientAuth", spec.Name, u)
		}
	}
	return &profile{name: spec.Name, kind: kind, extKeyUsage: eku, validity: validity, keyTypes: slices.Clone(keyTypes),
		allowEd25519: spec.AllowEd25519, freshestCRL: spec.FreshestCRL, tmpl: tmpl}, nil
}

// parseValidity reads "90d" or a Go duration.
func parseValidity(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, pki.Errorf(pki.Invalid, "validity %q is not a number of days", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, pki.Errorf(pki.Invalid, "validity %q is neither a duration (\"8760h\") nor days (\"365d\")", s)
		}
	}
	// Short-lived service certificates (renewed by their holder at two
	// thirds) may live as little as 10 s, which tests use.
	if d < 10*time.Second || d > 100*365*24*time.Hour {
		return 0, pki.Errorf(pki.Invalid, "validity %q must be between 10s and 100 years", s)
	}
	return d, nil
}

// urls are the locations written into AIA and CDP.
type urls struct {
	ocsp, issuer, crl string
}

// render executes the profile's template for a device and key. The
// certificate request handed to x509util is built from the public key alone,
// so neither the template nor x509util can copy a name from the CSR.
func (p *profile) render(deviceID string, names []string, pub crypto.PublicKey, u urls) (*x509.Certificate, error) {
	var data x509util.TemplateData
	if p.kind == KindService {
		if len(names) == 0 {
			return nil, pki.Errorf(pki.Invalid, "profile %q issues service certificates: give at least one DNS name or IP address", p.name)
		}
		cn := ""
		if len(names[0]) <= maxCommonName && net.ParseIP(names[0]) == nil {
			cn = names[0]
		}
		data = x509util.CreateTemplateData(cn, names)
		if cn == "" {
			data.SetSubject(x509util.Subject{})
		}
		// Names only: no URI SAN (the CA/B Forum's rules, which TLS
		// clients' linters apply, allow DNS names and IPs alone); fleetpki
		// finds the service by the certificate's serial.
		data.SetSubjectAlternativeNames(x509util.CreateSANs(names)...)
		data.Set("ExtKeyUsage", p.extKeyUsage)
	} else {
		if len(names) > 0 {
			return nil, pki.Errorf(pki.Invalid, "profile %q issues device certificates, which carry no DNS names or IP addresses", p.name)
		}
		data = x509util.CreateTemplateData(deviceID, nil)
		if len(deviceID) > maxCommonName {
			// RFC 5280's upper bound on a CN is 64 characters; a longer id is
			// named by the URI SAN alone, with an empty subject (Go then marks
			// the SAN critical, as RFC 5280 §4.2.1.6 requires).
			data.SetSubject(x509util.Subject{})
		}
		data.SetSubjectAlternativeNames(x509util.SubjectAlternativeName{Type: x509util.URIType, Value: pki.DeviceURI(deviceID)})
	}
	data.Set("Names", names)
	data.Set("DeviceID", deviceID)
	data.Set("DeviceURI", pki.DeviceURI(deviceID))
	data.Set("OCSPURL", u.ocsp)
	data.Set("IssuerURL", u.issuer)
	data.Set("CRLURL", u.crl)
	data.Set("Profile", p.name)
	execute := func(cr *x509.CertificateRequest, o *x509util.Options) error {
		data.SetCertificateRequest(cr)
		buf := new(bytes.Buffer)
		if err := p.tmpl.Execute(buf, data); err != nil {
			return fmt.Errorf("execute template: %w", err)
		}
		o.CertBuffer = buf
		return nil
	}
	xc, err := x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: pub, PublicKeyAlgorithm: publicKeyAlgorithm(pub)}, execute)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", p.name, err)
	}
	cert := xc.GetCertificate()
	if p.freshestCRL {
		ext, err := freshestCRL(u.crl + "/delta")
		if err != nil {
			return nil, err
		}
		cert.ExtraExtensions = append(cert.ExtraExtensions, ext)
	}
	// A profile must not mint CAs: the intermediate's pathLen 0 would make
	// such a certificate useless to conforming verifiers, but not to all.
	if cert.IsCA || cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return nil, fmt.Errorf("profile %q: the template makes a CA certificate; profiles issue end-entity certificates only", p.name)
	}
	return cert, nil
}

// dryRun renders the profile once with a throwaway key, so that a broken
// template fails at start-up rather than at the first enrollment.
func (p *profile) dryRun(u urls) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	var names []string
	if p.kind == KindService {
		names = []string{"dry-run.example"}
	}
	if _, err := p.render("dry-run-device", names, k.Public(), u); err != nil {
		return pki.Wrap(pki.Invalid, err, fmt.Sprintf("profile %q does not render", p.name))
	}
	return nil
}

// checkKey refuses keys that are weak, unknown or not accepted by the profile.
func (p *profile) checkKey(pub crypto.PublicKey) error {
	var kt string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABits || n > maxRSABits {
			return pki.Errorf(pki.Invalid, "RSA-%d key refused: %d to %d bits are accepted", n, minRSABits, maxRSABits)
		}
		if k.E < minRSAExponent || k.E%2 == 0 {
			return pki.Errorf(pki.Invalid, "RSA public exponent %d refused: it must be odd and at least %d", k.E, minRSAExponent)
		}
		kt = KeyTypeRSA
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			kt = KeyTypeECDSAP256
		case elliptic.P384():
			kt = KeyTypeECDSAP384
		default:
			return pki.Errorf(pki.Invalid, "ECDSA curve %s refused: P-256 and P-384 are accepted", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if !p.allowEd25519 {
			return pki.Errorf(pki.Invalid, "Ed25519 keys are not accepted by profile %q", p.name)
		}
		return nil
	default:
		return pki.Errorf(pki.Invalid, "key type %T is not supported", pub)
	}
	if !slices.Contains(p.keyTypes, kt) {
		return pki.Errorf(pki.Invalid, "%s keys are not accepted by profile %q (accepted: %s)", kt, p.name, strings.Join(p.keyTypes, ", "))
	}
	return nil
}

func publicKeyAlgorithm(pub crypto.PublicKey) x509.PublicKeyAlgorithm {
	switch pub.(type) {
	case *rsa.PublicKey:
		return x509.RSA
	case *ecdsa.PublicKey:
		return x509.ECDSA
	case ed25519.PublicKey:
		return x509.Ed25519
	}
	return x509.UnknownPublicKeyAlgorithm
}

// loadProfiles compiles the built-in profile and every *.json file in dir
// (which may be empty: no extra profiles), checking each with a dry run.
func loadProfiles(dir string, u urls) (map[string]*profile, error) {
	specs := slices.Clone(builtinSpecs)
	if dir != "" {
		paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return nil, fmt.Errorf("list profiles: %w", err)
		}
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("profiles directory: %w", err)
		}
		slices.Sort(paths)
		seen := map[string]string{}
		for _, path := range paths {
			spec, err := readProfileSpec(path)
			if err != nil {
				return nil, err
			}
			if prev, dup := seen[spec.Name]; dup {
				return nil, pki.Errorf(pki.Invalid, "profile %q is defined twice (%s and %s)", spec.Name, prev, path)
			}
			seen[spec.Name] = path
			if i := slices.IndexFunc(specs, func(b ProfileSpec) bool { return b.Name == spec.Name }); i >= 0 {
				specs[i] = spec // replaces a built-in profile
				continue
			}
			specs = append(specs, spec)
		}
	}
	out := make(map[string]*profile, len(specs))
	for _, spec := range specs {
		p, err := compileProfile(spec)
		if err != nil {
			return nil, err
		}
		if err := p.dryRun(u); err != nil {
			return nil, err
		}
		out[p.name] = p
	}
	return out, nil
}

func readProfileSpec(path string) (ProfileSpec, error) {
	var spec ProfileSpec
	b, err := os.ReadFile(path)
	if err != nil {
		return spec, fmt.Errorf("read profile: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // a misspelt "validty" must not silently become the default
	if err := dec.Decode(&spec); err != nil {
		return spec, pki.Wrap(pki.Invalid, err, "profile file "+path+" is not a valid profile")
	}
	return spec, nil
}

// freshestCRL encodes the Freshest CRL extension: like a CRL Distribution
// Point, one distribution point with the delta CRL's URL as its full name.
func freshestCRL(url string) (pkix.Extension, error) {
	type distributionPointName struct {
		FullName []asn1.RawValue `asn1:"optional,tag:0"`
	}
	type distributionPoint struct {
		DistributionPoint distributionPointName `asn1:"optional,tag:0"`
	}
	v, err := asn1.Marshal([]distributionPoint{{DistributionPoint: distributionPointName{
		FullName: []asn1.RawValue{{Tag: 6, Class: asn1.ClassContextSpecific, Bytes: []byte(url)}},
	}}})
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("freshest CRL: %w", err)
	}
	return pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 46}, Value: v}, nil
}
