// accept_model: snapd's own code as the oracle for a model assertion signed by serialmint.
//
// Usage (GOPATH mode, snapd 2.57 source from golang-github-snapcore-snapd-dev):
//
//	GO111MODULE=off GOPATH=$tmp:/usr/share/gocode go run accept_model.go MODEL [CHAIN]
//
// MODEL is the signed model assertion as served; CHAIN, when given, a stream of the
// account and account-key assertions of the key that signed it (not needed when that key
// is the trusted testrootorg root itself).
//
// It does what a device does with a model from its seed: asserts.Decode, then an
// asserts.Database whose trusted set is systestkeys.Trusted (the testrootorg root, as snapd's
// tests use) gets the chain (an asserts.Batch committed with Precheck: true) and the model
// (Database.Check, then Database.Add).
//
// Prints "snapd accepted model <brand>/<model> (grade <grade>)" and exits 0, or prints
// snapd's error and exits 1.
package main

import (
	"bytes"
	"fmt"
	"io"
	"io/ioutil"
	"os"

	"github.com/snapcore/snapd/asserts"
	"github.com/snapcore/snapd/asserts/systestkeys"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("snapd rejected: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 && len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: accept_model MODEL [CHAIN]")
		os.Exit(2)
	}
	modelText, err := ioutil.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	db, err := asserts.OpenDatabase(&asserts.DatabaseConfig{
		Backstore: asserts.NewMemoryBackstore(),
		Trusted:   systestkeys.Trusted,
	})
	if err != nil {
		fail("cannot open database: %v", err)
	}
	if len(os.Args) == 3 {
		chain, err := ioutil.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		batch := asserts.NewBatch(nil)
		dec := asserts.NewDecoder(bytes.NewReader(chain))
		for {
			a, err := dec.Decode()
			if err == io.EOF {
				break
			}
			if err != nil {
				fail("cannot decode the chain: %v", err)
			}
			if err := batch.Add(a); err != nil {
				fail("%v", err)
			}
		}
		if err := batch.CommitTo(db, &asserts.CommitOptions{Precheck: true}); err != nil {
			fail("%v", err)
		}
	}
	a, err := asserts.Decode(modelText)
	if err != nil {
		fail("cannot decode model: %v", err)
	}
	model, ok := a.(*asserts.Model)
	if !ok {
		fail("not a model assertion: %s", a.Type().Name)
	}
	if err := db.Check(model); err != nil {
		fail("%v", err)
	}
	if err := db.Add(model); err != nil {
		fail("%v", err)
	}
	grade := string(model.Grade())
	if grade == "" {
		grade = "unset"
	}
	fmt.Printf("snapd accepted model %s/%s (grade %s)\n", model.BrandID(), model.Model(), grade)
}
