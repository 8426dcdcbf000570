// accept_serial: snapd's own code as the oracle for a serial issued by serialmint.
//
// Usage (GOPATH mode, snapd 2.57 source from golang-github-snapcore-snapd-dev):
//
//	GO111MODULE=off GOPATH=$tmp:/usr/share/gocode go run accept_serial.go \
//	    ANSWER_STREAM MODEL_ASSERTION DEVICE_KEY_ID
//
// ANSWER_STREAM is the body of serialmint's /v1/serial answer to a request made with
// `Snap-Device-Capabilities: serial-stream` (serial, then account-key and account),
// MODEL_ASSERTION the model the device sent, DEVICE_KEY_ID the sha3-384 id of the device key.
//
// It does what snapd's devicestate does with such an answer: the stream is decoded the way
// submitSerialRequest does (the serial aside, everything else into an asserts.Batch), the
// getSerial post-checks run (brand, model, device key id; authority vs serial-authority),
// then acceptSerialPlusBatch adds the serial to the batch and commits it with
// Precheck: true to an asserts.Database whose trusted set is systestkeys.Trusted (the
// testrootorg root, as snapd's tests use) and which already holds the device's model.
//
// Prints "snapd accepted serial <serial>" and exits 0, or prints snapd's error and exits 1.
package main

import (
	"bytes"
	"fmt"
	"io"
	"io/ioutil"
	"os"

	"github.com/snapcore/snapd/asserts"
	"github.com/snapcore/snapd/asserts/systestkeys"
	"github.com/snapcore/snapd/strutil"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("snapd rejected: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: accept_serial ANSWER_STREAM MODEL_ASSERTION DEVICE_KEY_ID")
		os.Exit(2)
	}
	answer, err := ioutil.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	modelText, err := ioutil.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	deviceKeyID := os.Args[3]

	// The device's assertion database, as snapd's tests open it: the testrootorg root
	// (account + account-key) trusted.
	db, err := asserts.OpenDatabase(&asserts.DatabaseConfig{
		Backstore: asserts.NewMemoryBackstore(),
		Trusted:   systestkeys.Trusted,
	})
	if err != nil {
		fail("cannot open database: %v", err)
	}

	// The model is in the device's database before registration (from the seed); its
	// chain (testrootorg's account and account-key) is the trusted root itself.
	ma, err := asserts.Decode(modelText)
	if err != nil {
		fail("cannot decode model: %v", err)
	}
	model, ok := ma.(*asserts.Model)
	if !ok {
		fail("not a model assertion: %s", ma.Type().Name)
	}
	if err := db.Add(model); err != nil {
		fail("cannot add model: %v", err)
	}

	// submitSerialRequest: decode the answer stream; exactly one serial, the rest in a batch.
	var serial *asserts.Serial
	var batch *asserts.Batch
	dec := asserts.NewDecoder(bytes.NewReader(answer))
	for {
		got, err := dec.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("cannot read response to request for a serial: %v", err)
		}
		if got.Type() == asserts.SerialType {
			if serial != nil {
				fail("cannot accept more than a single device serial assertion from the device service")
			}
			serial = got.(*asserts.Serial)
		} else {
			if batch == nil {
				batch = asserts.NewBatch(nil)
			}
			if err := batch.Add(got); err != nil {
				fail("%v", err)
			}
		}
	}
	if serial == nil {
		fail("cannot proceed, received assertion stream from the device service missing device serial assertion")
	}
	if batch == nil {
		fail("the answer holds the serial alone, not a serial-stream (serial + account-key + account)")
	}

	// getSerial's post-checks.
	if serial.BrandID() != model.BrandID() || serial.Model() != model.Model() || serial.DeviceKey().ID() != deviceKeyID {
		fail("obtained serial assertion does not match provided device identity information (brand, model, key id): %s / %s / %s != %s / %s / %s",
			serial.BrandID(), serial.Model(), serial.DeviceKey().ID(), model.BrandID(), model.Model(), deviceKeyID)
	}
	if serial.BrandID() != serial.AuthorityID() {
		if !strutil.ListContains(model.SerialAuthority(), serial.AuthorityID()) {
			fail("obtained serial assertion is signed by authority %q different from brand %q without model assertion with serial-authority set to to allow for them",
				serial.AuthorityID(), serial.BrandID())
		}
	}

	// acceptSerialPlusBatch.
	if err := batch.Add(serial); err != nil {
		fail("%v", err)
	}
	if err := batch.CommitTo(db, &asserts.CommitOptions{Precheck: true}); err != nil {
		fail("%v", err)
	}

	// The serial is now in the device's database, under its primary key.
	found, err := db.Find(asserts.SerialType, map[string]string{
		"brand-id": serial.BrandID(),
		"model":    serial.Model(),
		"serial":   serial.Serial(),
	})
	if err != nil {
		fail("serial not in the database after commit: %v", err)
	}
	if !bytes.Equal(asserts.Encode(found), asserts.Encode(serial)) {
		fail("the database holds a different serial")
	}
	fmt.Printf("snapd accepted serial %s\n", serial.Serial())
}
