"""Alarms: the rules (one pure function per alarm type), the ISA-18.2 engine, and the hazard register."""
