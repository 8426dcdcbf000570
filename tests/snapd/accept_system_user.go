// accept_system_user: snapd's own code as the oracle for a system-user assertion stream made
// by `serialmint create system-user`.
//
// Usage (GOPATH mode, snapd 2.57 source, cgo with libcrypt):
//
//	GO111MODULE=off GOPATH=$tmp:/usr/share/gocode go run accept_system_user.go MODEL STREAM PASSWORD [SERIAL]
//
// MODEL is the device's model assertion; STREAM the auto-import file (the brand's account,
// the key's account-key, the system-user); PASSWORD a file holding the password the user
// types at login (empty: not checked); SERIAL the device's serial number (none: the device
// is not registered yet).
//
// It does what a device does: an asserts.Database trusting systestkeys.Trusted (the
// testrootorg root) gets the model, then the stream as `snap auto-import` / `snap ack` adds
// it (an asserts.Batch committed with Precheck: true, as assertstate.AddBatch does); then
// snapd's create-user checks (daemon/api_users.go, getUserDetailsFromAssertion, copied
// because they need the daemon's state): the system-user found by the model's brand-id and
// the email, its authority in the model's system-user-authority, series, models, serials, and
// valid now. Finally the password hash is checked the way the system checks it at login:
// crypt(3) of the password with the hash as setting must give the hash.
//
// Prints "snapd accepted system-user <username> for <brand>/<model>" and exits 0, or prints
// snapd's error and exits 1.
package main

/*
#cgo LDFLAGS: -lcrypt
#include <crypt.h>
#include <stdlib.h>
*/
import "C"

import (
	"bytes"
	"fmt"
	"io"
	"io/ioutil"
	"os"
	"strings"
	"time"
	"unsafe"

	"github.com/snapcore/snapd/asserts"
	"github.com/snapcore/snapd/asserts/systestkeys"
	"github.com/snapcore/snapd/strutil"
)

func fail(format string, args ...interface{}) {
	fmt.Printf("snapd rejected: "+format+"\n", args...)
	os.Exit(1)
}

func read(path string) []byte {
	b, err := ioutil.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return b
}

func crypt(password, setting string) string {
	p := C.CString(password)
	defer C.free(unsafe.Pointer(p))
	s := C.CString(setting)
	defer C.free(unsafe.Pointer(s))
	out := C.crypt(p, s)
	if out == nil {
		return ""
	}
	return C.GoString(out)
}

func main() {
	if len(os.Args) != 4 && len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: accept_system_user MODEL STREAM PASSWORD [SERIAL]")
		os.Exit(2)
	}
	db, err := asserts.OpenDatabase(&asserts.DatabaseConfig{
		Backstore: asserts.NewMemoryBackstore(),
		Trusted:   systestkeys.Trusted,
	})
	if err != nil {
		fail("cannot open database: %v", err)
	}
	a, err := asserts.Decode(read(os.Args[1]))
	if err != nil {
		fail("cannot decode model: %v", err)
	}
	modelAs, ok := a.(*asserts.Model)
	if !ok {
		fail("not a model assertion: %s", a.Type().Name)
	}

	batch := asserts.NewBatch(nil)
	dec := asserts.NewDecoder(bytes.NewReader(read(os.Args[2])))
	email := ""
	for {
		a, err := dec.Decode()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("cannot decode the stream: %v", err)
		}
		if su, ok := a.(*asserts.SystemUser); ok {
			email = su.Email()
		}
		if err := batch.Add(a); err != nil {
			fail("%v", err)
		}
	}
	if email == "" {
		fail("no system-user assertion in the stream")
	}
	// The model is on the device before any auto-import.
	if err := batch.Add(modelAs); err != nil {
		fail("%v", err)
	}
	if err := batch.CommitTo(db, &asserts.CommitOptions{Precheck: true}); err != nil {
		fail("%v", err)
	}

	// daemon/api_users.go, getUserDetailsFromAssertion (snapd 2.57).
	errorPrefix := fmt.Sprintf("cannot add system-user %q: ", email)
	brandID := modelAs.BrandID()
	series := modelAs.Series()
	model := modelAs.Model()
	found, err := db.Find(asserts.SystemUserType, map[string]string{
		"brand-id": brandID,
		"email":    email,
	})
	if err != nil {
		fail(errorPrefix+"%v", err)
	}
	su := found.(*asserts.SystemUser)
	sysUserAuths := modelAs.SystemUserAuthority()
	if len(sysUserAuths) > 0 && !strutil.ListContains(sysUserAuths, su.AuthorityID()) {
		fail(errorPrefix+"%q not in accepted authorities %q", email, su.AuthorityID(), sysUserAuths)
	}
	if len(su.Series()) > 0 && !strutil.ListContains(su.Series(), series) {
		fail(errorPrefix+"%q not in series %q", email, series, su.Series())
	}
	if len(su.Models()) > 0 && !strutil.ListContains(su.Models(), model) {
		fail(errorPrefix+"%q not in models %q", model, su.Models())
	}
	if len(su.Serials()) > 0 {
		if len(os.Args) != 5 {
			fail(errorPrefix + "bound to serial assertion but device not yet registered")
		}
		serial := os.Args[4]
		if !strutil.ListContains(su.Serials(), serial) {
			fail(errorPrefix+"%q not in serials %q", serial, su.Serials())
		}
	}
	if !su.ValidAt(time.Now()) {
		fail(errorPrefix + "assertion not valid anymore")
	}

	password := strings.TrimRight(string(read(os.Args[3])), "\n")
	if password != "" {
		hash := su.Password()
		if hash == "" {
			fail("the system-user has no password")
		}
		if got := crypt(password, hash); got != hash {
			fail("crypt(3) does not verify the password against %q", hash)
		}
	}
	fmt.Printf("snapd accepted system-user %s for %s/%s\n", su.Username(), brandID, model)
}
