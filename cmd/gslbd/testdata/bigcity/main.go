// Command bigcity writes a GeoIP2-City database of n /24 networks (inside
// 10.0.0.0/8 and up: data only, nothing is ever sent there) with five
// thousand distinct places, so that reading and walking it takes a
// noticeable time, as a real City database does. The reload test runs it
// as its own process: built without the race detector it writes the
// database several times faster than the test binary could.
//
//	go run ./testdata/bigcity -n 200000 -out big.mmdb
package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

func main() {
	n := flag.Int("n", 200_000, "number of /24 `networks`")
	out := flag.String("out", "", "database `file` to write")
	flag.Parse()
	if *out == "" || *n <= 0 || *n > 1<<24 {
		fmt.Fprintln(os.Stderr, "usage: bigcity -n NETWORKS -out FILE")
		os.Exit(2)
	}
	if err := write(*out, *n); err != nil {
		fmt.Fprintln(os.Stderr, "bigcity:", err)
		os.Exit(1)
	}
}

func write(path string, n int) error {
	w, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", IPVersion: 4, RecordSize: 28, IncludeReservedNetworks: true})
	if err != nil {
		return err
	}
	countries := []string{"DE", "US", "JP", "BR", "AU", "ZA", "GB", "CA", "SG", "AR", "NZ", "NG", "FR", "IN", "MX"}
	continents := map[string]string{"DE": "EU", "US": "NA", "JP": "AS", "BR": "SA", "AU": "OC", "ZA": "AF", "GB": "EU",
		"CA": "NA", "SG": "AS", "AR": "SA", "NZ": "OC", "NG": "AF", "FR": "EU", "IN": "AS", "MX": "NA"}
	recs := make([]mmdbtype.Map, 5000)
	for place := range recs {
		c := countries[place%len(countries)]
		recs[place] = mmdbtype.Map{
			"country":   mmdbtype.Map{"iso_code": mmdbtype.String(c)},
			"continent": mmdbtype.Map{"code": mmdbtype.String(continents[c])},
			"location": mmdbtype.Map{
				"latitude":  mmdbtype.Float64(float64(place%179) - 89.5),
				"longitude": mmdbtype.Float64(float64(place%359) - 179.5),
			},
		}
	}
	for i := range n {
		// IPv4 networks go in as 4-byte addresses, or the tree holds
		// them as IPv6 and the walk finds nothing.
		ip := net.IPv4(byte(10+i>>16), byte(i>>8), byte(i), 0).To4()
		if err := w.Insert(&net.IPNet{IP: ip, Mask: net.CIDRMask(24, 32)}, recs[i%len(recs)]); err != nil {
			return fmt.Errorf("insert network %d: %w", i, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := w.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
