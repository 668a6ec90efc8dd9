package geo_test

import (
	"gslbd/geo"
	"gslbd/geo/mmdb"
)

func init() { geo.SetOpen(mmdb.Open) }
