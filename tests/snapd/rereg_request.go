// rereg_request: the serial-request stream snapd 2.57 sends on a re-registration remodel,
// made by snapd's own asserts code, for serialmint to answer.
//
// Usage (GOPATH mode, snapd 2.57 source from golang-github-snapcore-snapd-dev):
//
//	GO111MODULE=off GOPATH=$tmp:/usr/share/gocode go run rereg_request.go \
//	    DEVICE_KEY_PKCS8 REQUEST_ID NEW_MODEL CURRENT_SERIAL PROPOSED_SERIAL
//
// It does what overlord/devicestate does for a reregRemodelContext: prepareSerialRequest's
// headers (brand-id and model of the new model, request-id, device-key, the proposed serial
// of the original gadget's configuration) plus SerialRequestExtraHeaders (original-brand-id,
// original-model, original-serial of the current serial), signed with
// asserts.SignWithoutAuthority by the device key, then encoded with asserts.NewEncoder
// followed by SerialRequestAncillaryAssertions (the new model, the current serial).
//
// Writes the stream to stdout and exits 0, or prints the error and exits 2.
package main

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io/ioutil"
	"os"

	"github.com/snapcore/snapd/asserts"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(2)
}

func decode(path string) asserts.Assertion {
	text, err := ioutil.ReadFile(path)
	if err != nil {
		die("%v", err)
	}
	a, err := asserts.Decode(text)
	if err != nil {
		die("cannot decode %s: %v", path, err)
	}
	return a
}

func main() {
	if len(os.Args) != 6 {
		die("usage: rereg_request DEVICE_KEY_PKCS8 REQUEST_ID NEW_MODEL CURRENT_SERIAL PROPOSED_SERIAL")
	}
	der, err := ioutil.ReadFile(os.Args[1])
	if err != nil {
		die("%v", err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		die("cannot parse device key: %v", err)
	}
	rsaKey, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		die("the device key is not RSA")
	}
	privKey := asserts.RSAPrivateKey(rsaKey)
	model, ok := decode(os.Args[3]).(*asserts.Model)
	if !ok {
		die("NEW_MODEL is not a model assertion")
	}
	origSerial, ok := decode(os.Args[4]).(*asserts.Serial)
	if !ok {
		die("CURRENT_SERIAL is not a serial assertion")
	}

	encodedPubKey, err := asserts.EncodePublicKey(privKey.PublicKey())
	if err != nil {
		die("cannot encode device public key: %v", err)
	}
	// prepareSerialRequest; the device state of a reregRemodelContext is the new model's.
	headers := map[string]interface{}{
		"brand-id":   model.BrandID(),
		"model":      model.Model(),
		"request-id": os.Args[2],
		"device-key": string(encodedPubKey),
	}
	if os.Args[5] != "" {
		headers["serial"] = os.Args[5]
	}
	// reregRemodelContext.SerialRequestExtraHeaders.
	for k, v := range map[string]interface{}{
		"original-brand-id": origSerial.BrandID(),
		"original-model":    origSerial.Model(),
		"original-serial":   origSerial.Serial(),
	} {
		headers[k] = v
	}
	serialReq, err := asserts.SignWithoutAuthority(asserts.SerialRequestType, headers, nil, privKey)
	if err != nil {
		die("cannot sign serial-request: %v", err)
	}
	buf := new(bytes.Buffer)
	encoder := asserts.NewEncoder(buf)
	if err := encoder.Encode(serialReq); err != nil {
		die("cannot encode serial-request: %v", err)
	}
	// reregRemodelContext.SerialRequestAncillaryAssertions: the new model, the current serial.
	for _, a := range []asserts.Assertion{model, origSerial} {
		if err := encoder.Encode(a); err != nil {
			die("cannot encode ancillary assertion: %v", err)
		}
	}
	os.Stdout.Write(buf.Bytes())
}
