"""Per-step features: MFCC block, streaming openSMILE LLD statistics, musicnn mel patches."""
