"""The nvflare target: an NVFlare deployment through the FLARE API session; POC mode on one machine."""
