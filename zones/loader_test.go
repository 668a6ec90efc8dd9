package zones_test

import (
	"gslbd/zones"
	"gslbd/zones/config"
)

func init() {
	zones.SetLoadTree(func(path string) (*zones.Snapshot, error) {
		cfg, err := config.LoadNodeConfig(path)
		if err != nil {
			return nil, err
		}
		return config.Load(cfg)
	})
}
