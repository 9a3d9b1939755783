// Room node on the edge-agent firmware bridge: temperature, humidity and CO2 every 10 s, a
// writable setpoint (5..30 °C) and a writable LED, over USB Serial at 115200 8N1.
//
// Build (not compiled in CI): copy core/ebp.h core/*.c gen/* port/ebp_arduino.h port/arduino.cpp
// next to this sketch (or into a library folder) and install the "Nanopb" library from the
// Library Manager (pb.h, pb_encode.c, pb_decode.c, pb_common.c). On small AVR boards set
// EBP_MAX_FRAME 256 and EBP_WINDOW 2 before including ebp.h (the context is then ~3 KB).
// Never Serial.print() on the bridge port: use ebp_log(), which frames the line on channel 3.
#include <Arduino.h>

#include "ebp.h"
#include "ebp_arduino.h"

enum { P_TEMPERATURE = 1, P_HUMIDITY, P_CO2, P_SETPOINT, P_LED };

static const ebp_point_t points[] = {
    {P_TEMPERATURE, "temperature", "°C", EBP_NUMBER, 0, 0, 0, NULL},
    {P_HUMIDITY, "humidity", "%", EBP_NUMBER, 0, 0, 0, NULL},
    {P_CO2, "co2", "ppm", EBP_NUMBER, 0, 0, 0, NULL},
    {P_SETPOINT, "setpoint", "°C", EBP_NUMBER, 1, 5, 30, NULL},
    {P_LED, "led", "", EBP_BOOL, 1, 0, 0, NULL},
};

struct Board {
  ebp_ctx_t ctx;
  ebp_arduino_t serial_port;
  ebp_reading_t ring[64];
  double setpoint = 21.0;
  bool led = false;
};
static Board board;  // one board here; several Board objects would work the same way

static ebp_cmd_status_t on_command(void *user, const ebp_point_t *pt, const ebp_value_t *v, ebp_value_t *readback,
                                   char *msg, size_t msg_size) {
  Board *b = (Board *)user;
  if (pt->id == P_SETPOINT) {
    b->setpoint = v->v.number;
    *readback = ebp_number(b->setpoint);
    return EBP_CMD_OK;
  }
  if (pt->id == P_LED) {
    b->led = v->v.flag;
    digitalWrite(LED_BUILTIN, b->led ? HIGH : LOW);
    *readback = ebp_bool(digitalRead(LED_BUILTIN) == HIGH);  // read back what the pin really is
    return EBP_CMD_OK;
  }
  snprintf(msg, msg_size, "%s is read-only", pt->name);
  return EBP_CMD_REFUSED;
}

static uint8_t reset_reason() {
#if defined(ESP32)
  switch (esp_reset_reason()) {
    case ESP_RST_POWERON: return 1;
    case ESP_RST_EXT: return 2;
    case ESP_RST_SW: return 3;
    case ESP_RST_INT_WDT: case ESP_RST_TASK_WDT: case ESP_RST_WDT: return 4;
    case ESP_RST_BROWNOUT: return 5;
    case ESP_RST_PANIC: return 6;
    default: return 0;
  }
#else
  return 0;
#endif
}

void setup() {
  static const uint8_t fallback_id[8] = {0x52, 0x4E, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01};  // AVR: set per board
  pinMode(LED_BUILTIN, OUTPUT);
  Serial.begin(115200);
  ebp_port_t port;
  ebp_arduino_port(&board.serial_port, &Serial, fallback_id, sizeof fallback_id, &port);
  ebp_config_t cfg = {};
  cfg.hardware = "room-node/rev-c";
  cfg.firmware = "1.0.0";
  cfg.reset_reason = reset_reason();
  cfg.points = points;
  cfg.n_points = sizeof points / sizeof points[0];
  cfg.ring = board.ring;
  cfg.ring_cap = sizeof board.ring / sizeof board.ring[0];
  cfg.on_command = on_command;
  cfg.user = &board;
  ebp_init(&board.ctx, &cfg, &port);
}

void loop() {
  static uint32_t last = 0;
  ebp_poll(&board.ctx);
  if (millis() - last >= 10000) {
    last = millis();
    // replace with the real sensors (SHT4x, SCD4x...)
    ebp_record(&board.ctx, P_TEMPERATURE, ebp_number(21.0 + (millis() / 1000 % 20) * 0.1), EBP_GOOD);
    ebp_record(&board.ctx, P_HUMIDITY, ebp_number(45.0), EBP_GOOD);
    ebp_record(&board.ctx, P_CO2, ebp_number(650), EBP_GOOD);
    ebp_record(&board.ctx, P_SETPOINT, ebp_number(board.setpoint), EBP_GOOD);
    ebp_record(&board.ctx, P_LED, ebp_bool(board.led), EBP_GOOD);
    ebp_log(&board.ctx, EBP_LOG_DEBUG, "measured; %u readings waiting", (unsigned)ebp_ring_used(&board.ctx));
  }
}
