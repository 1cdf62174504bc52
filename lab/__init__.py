"""The lab: throwaway Debian workstations, a real smarthost and a real keyring on one machine."""
